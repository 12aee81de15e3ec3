"""Who may call what, through 127.0.0.1 as API Gateway's JWT authorizer answers: every
route of the template, walked with no token, a bad token and a token without the
route's scope, changes nothing; the same request with the route's scope goes through."""
import base64
import json
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests

from infra.local.emulator import emulator_client
from infra.local.stack import DEFAULT_TEMPLATE
from infra.local.template import load_template
from tests.e2e.conftest import Api, paid, token

ALL = ["loyalty/members.read", "loyalty/members.write", "loyalty/ops.read", "loyalty/ops.write"]
ROUTES = [(event.method, event.path, event) for _, event in load_template(DEFAULT_TEMPLATE).api_events()]
PROTECTED = [(method, path, event) for method, path, event in ROUTES if event.authorizer is not None]


@pytest.fixture(scope="module")
def world(stack, operator_token):
    """A member with points, a redemption, a ledger entry and an open dispute: every
    path parameter names something real, so a request that got through would act."""
    api = Api(stack.api_url, operator_token)
    member = f"m-auth-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/members/{member}", {"name": "Ana", "locale": "en"}).ok
    assert api.order(paid(member, f"o-{member}", 150000)).ok
    redemption = api.post(f"/members/{member}/redemptions", {"item_id": "coupon-10", "idempotency_key": "w1"}).json()
    entry = api.get(f"/members/{member}/ledger").json()["entries"][-1]
    dispute = api.post(f"/members/{member}/disputes", {"entry_id": entry["entry_id"], "reason": "too few",
                                                       "idempotency_key": "d1"}).json()
    from loyalty.engagement.reviews import review_id_for
    held = api.post(f"/members/{member}/activities", {"activity_id": "w-ugc", "type": "ugc",
                                                       "occurred_at": datetime.now(timezone.utc).isoformat()})
    assert held.json()["status"] == "held", held.text
    challenge = f"c-auth-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/challenges/{challenge}", _challenge_body()).status_code == 201
    return {"member_id": member, "channel": "whatsapp", "redemption_id": redemption["redemption_id"],
            "dispute_id": dispute["dispute_id"], "entry_id": entry["entry_id"],
            "review_id": review_id_for("activity", member, "w-ugc"), "challenge_id": challenge}


def _challenge_body() -> dict:
    # a challenge that starts years from now: whatever the service's clock, anything may change
    return {"name": "Auth 90", "starts_on": "2099-01-01", "days": 90}


def _url(path: str, world: dict) -> str:
    for name, value in world.items():
        path = path.replace("{" + name + "}", value)
    return path


def _body(method: str, path: str, world: dict):
    """A request that would succeed if admitted (so refusing it is what keeps state)."""
    bodies = {
        "/members/{member_id}": {"name": "Mallory", "locale": "en"},
        "/members/{member_id}/consents/{channel}": {"status": "opted_in", "source": "forged",
                                                     "at": "2026-11-20T10:00:00+08:00"},
        "/members/{member_id}/redemptions": {"item_id": "coupon-10", "idempotency_key": f"x-{uuid.uuid4().hex}"},
        "/members/{member_id}/adjustments": {"points": 100000, "reason": "free points",
                                             "idempotency_key": f"x-{uuid.uuid4().hex}"},
        "/members/{member_id}/disputes": {"entry_id": world["entry_id"], "reason": "x",
                                          "idempotency_key": f"x-{uuid.uuid4().hex}"},
        "/members/{member_id}/disputes/{dispute_id}/resolve": {"outcome": "upheld", "points": 5000, "note": "x"},
        "/members/{member_id}/activities": {"activity_id": f"x-{uuid.uuid4().hex}", "type": "poll",
                                            "occurred_at": datetime.now(timezone.utc).isoformat()},
        "/reviews/{review_id}": {"decision": "approve", "note": "x"},
        "/campaigns": {"campaign_id": f"c-{uuid.uuid4().hex[:8]}", "template": "member_day_offer",
                       "member_ids": [world["member_id"]]},
        "/challenges/{challenge_id}": {**_challenge_body(), "name": "Mallory 90"},
        "/challenges/{challenge_id}/invitations": {"member_ids": [world["member_id"]]},
        "/challenges/{challenge_id}/enrolments": {"member_id": world["member_id"],
                                                  "agreed_at": datetime.now(timezone.utc).isoformat()},
    }
    return bodies.get(path, {}) if method in ("PUT", "POST") else None


def _state(stack) -> tuple:
    """Every item of the table and the depth of every queue, read from the emulator."""
    health = requests.get(stack.api_url + "/_local/health", timeout=10).json()
    dynamodb = emulator_client("dynamodb", health["emulator_url"])
    items = []
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            items += [json.dumps(item, sort_keys=True) for item in page["Items"]]
    sqs = emulator_client("sqs", health["emulator_url"])
    depths = []
    for url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                            "ApproximateNumberOfMessagesNotVisible"])
        depths.append((url, sum(int(v) for v in attributes["Attributes"].values())))
    return sorted(items), sorted(depths)


def _forged(real: str) -> str:
    """The same claims with every scope, re-encoded without a valid signature."""
    header, payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = " ".join(ALL)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_every_route_but_the_webhooks_is_protected():
    assert len(PROTECTED) >= 18
    for method, path, event in ROUTES:
        assert (event.authorizer is None) == path.startswith("/webhooks/"), f"{method} {path}"
        assert event.authorizer is None or event.scopes, f"{method} {path} has an authorizer but no scope"


def test_no_route_is_reachable_without_its_scope_and_refusals_change_nothing(stack, world):
    wrong_scope_tokens = {}
    for _, _, event in PROTECTED:
        others = tuple(scope for scope in ALL if scope not in event.scopes)
        if others not in wrong_scope_tokens:
            wrong_scope_tokens[others] = token(stack.api_url, subject="mallory", scopes=list(others))
    member_scoped = token(stack.api_url, subject="mallory", scopes=["loyalty/members.read"])
    expired = token(stack.api_url, subject="mallory", expires_in=1)
    time.sleep(2)
    before = _state(stack)
    for method, path, event in PROTECTED:
        url, body = stack.api_url + _url(path, world), _body(method, path, world)
        attempts = {
            "no token": {},
            "empty bearer": {"Authorization": "Bearer "},
            "not a JWT": {"Authorization": "Bearer not-a-token"},
            "expired": {"Authorization": f"Bearer {expired}"},
            "forged scopes": {"Authorization": f"Bearer {_forged(member_scoped)}"},
            "wrong header": {"X-Authorization": f"Bearer {wrong_scope_tokens[next(iter(wrong_scope_tokens))]}"},
        }
        for name, headers in attempts.items():
            answer = requests.request(method, url, json=body, headers=headers, timeout=30)
            assert answer.status_code == 401, f"{method} {path} ({name}): {answer.status_code} {answer.text}"
            assert answer.json() == {"message": "Unauthorized"}
        others = tuple(scope for scope in ALL if scope not in event.scopes)
        answer = requests.request(method, url, json=body, timeout=30,
                                  headers={"Authorization": f"Bearer {wrong_scope_tokens[others]}"})
        assert answer.status_code == 403, f"{method} {path} with {others}: {answer.status_code} {answer.text}"
        assert answer.json() == {"message": "Forbidden"}
    assert _state(stack) == before, "a refused request changed something"


@pytest.mark.parametrize("method, path, event", PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_each_of_a_routes_scopes_admits_it(stack, world, method, path, event):
    for scope in event.scopes:
        bearer = token(stack.api_url, subject="e2e-operator", scopes=[scope])
        answer = requests.request(method, stack.api_url + _url(path, world), json=_body(method, path, world),
                                  headers={"Authorization": f"Bearer {bearer}"}, timeout=30)
        assert answer.status_code not in (401, 403), f"{method} {path} with {scope}: {answer.text}"
        assert answer.status_code < 500, answer.text


def test_a_token_from_another_user_pool_is_refused(stack, world, tmp_path):
    """A token signed by another stack's key (another user pool) is foreign: 401."""
    from infra.local.authorizer import LocalIssuer
    other = LocalIssuer(load_template(DEFAULT_TEMPLATE))  # same issuer URL and clients, another key
    foreign = other.issue("mallory", ALL)
    answer = requests.get(f"{stack.api_url}/members/{world['member_id']}", timeout=10,
                          headers={"Authorization": f"Bearer {foreign}"})
    assert answer.status_code == 401 and answer.json() == {"message": "Unauthorized"}


def test_the_token_is_accepted_with_or_without_bearer(stack, world, operator_token):
    for value in (f"Bearer {operator_token}", f"bearer {operator_token}", operator_token):
        answer = requests.get(f"{stack.api_url}/members/{world['member_id']}", timeout=10,
                              headers={"Authorization": value})
        assert answer.status_code == 200, value[:12]


def test_an_adjustment_records_the_tokens_subject_never_the_bodys(stack, world):
    bearer = token(stack.api_url, subject="op-jane@example.com", scopes=["loyalty/ops.write", "loyalty/ops.read"])
    operator = Api(stack.api_url, bearer)
    member = world["member_id"]
    made = operator.post(f"/members/{member}/adjustments", {"points": 7, "reason": "goodwill",
                                                            "operator_id": "someone-else", "idempotency_key": "sub-1"})
    assert made.status_code == 201, made.text
    reader = Api(stack.api_url, token(stack.api_url, scopes=["loyalty/members.read"]))
    entries = reader.get(f"/members/{member}/ledger").json()["entries"]
    adjust = next(e for e in entries if e["type"] == "ADJUST" and e["reason"] == "goodwill")
    assert "op-jane@example.com" in json.dumps(adjust) and "someone-else" not in json.dumps(adjust)


def test_the_local_token_endpoint_validates_its_request(stack):
    for body in ({"scopes": ["loyalty/admin"]}, {"expires_in": 0}, {"expires_in": 10**6}, {"subject": ""},
                 {"scopes": "loyalty/ops.read"}, {"who": "x"}):
        answer = requests.post(stack.api_url + "/_local/token", json=body, timeout=10)
        assert answer.status_code == 400, body
    issued = requests.post(stack.api_url + "/_local/token", json={}, timeout=10).json()
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 3600


def test_unknown_routes_and_methods_answer_as_the_http_api_does(anonymous):
    for method, path in (("GET", "/nowhere"), ("DELETE", "/webhooks/orders"), ("PATCH", "/members/x"),
                         ("FOO", "/catalog"), ("GET", "/members/x/y/z")):
        answer = anonymous.http.request(method, anonymous.base + path, timeout=10)
        assert answer.status_code == 404, f"{method} {path}"
        assert answer.json() == {"message": "Not Found"}
