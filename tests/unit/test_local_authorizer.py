"""The local stack's JWT authorizer, claim by claim, as API Gateway's HTTP API checks them."""
import time

import jwt
import pytest

from infra.local.authorizer import Denied, LocalIssuer
from infra.local.http import Request
from infra.local.stack import DEFAULT_TEMPLATE
from infra.local.template import load_template

MODEL = load_template(DEFAULT_TEMPLATE)
ROUTES = {(e.method, e.path): e for _, e in MODEL.api_events()}
ADJUST = ROUTES[("POST", "/members/{member_id}/adjustments")]
READ = ROUTES[("GET", "/members/{member_id}")]


@pytest.fixture(scope="module")
def issuer():
    return LocalIssuer(MODEL)


def request(token: str | None, header: str = "Authorization") -> Request:
    headers = [(header, f"Bearer {token}")] if token is not None else []
    return Request("GET", "/x", "", headers, b"", "127.0.0.1")


def status(issuer, token, event=ADJUST) -> int:
    try:
        issuer.verify(request(token), event.authorizer, event.scopes)
        return 200
    except Denied as denied:
        return denied.response.status


def resigned(issuer, **changes) -> str:
    """A token signed with the issuer's own key, with some claims changed."""
    claims = jwt.decode(issuer.issue("op"), options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, issuer._key, algorithm="RS256",
                      headers={"kid": issuer.kid})


def test_a_token_with_the_routes_scope_passes_and_carries_its_claims(issuer):
    verified = issuer.verify(request(issuer.issue("op-1", ["loyalty/ops.write"])), ADJUST.authorizer, ADJUST.scopes)
    context = verified.request_context()["jwt"]
    assert context["claims"]["sub"] == "op-1" and context["scopes"] == ["loyalty/ops.write"]
    assert isinstance(context["claims"]["exp"], str)  # API Gateway hands claims over as strings


def test_any_one_of_the_routes_scopes_is_enough(issuer):
    assert READ.scopes == ("loyalty/members.read", "loyalty/ops.read")
    assert status(issuer, issuer.issue("x", ["loyalty/ops.read"]), READ) == 200
    assert status(issuer, issuer.issue("x", ["loyalty/members.write"]), READ) == 403


@pytest.mark.parametrize("changes", [
    {"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"},   # another user pool
    {"client_id": "not-a-client-of-this-stack"},                                # another app client
    {"exp": -1},                                                                # expired (seconds from now)
    {"nbf": 600},                                                               # not yet valid
    {"iat": 600},                                                               # issued in the future
    {"exp": None},                                                              # no expiry
    {"iss": None},                                                              # no issuer
])
def test_claims_api_gateway_checks_are_checked(issuer, changes):
    # times are offsets from the test's own now: values taken at collection go stale in a long run
    now = int(time.time())
    changes = {k: now + v if k in ("exp", "nbf", "iat") and v is not None else v for k, v in changes.items()}
    assert status(issuer, resigned(issuer, **changes)) == 401


def test_an_id_token_style_aud_is_accepted_for_a_known_client(issuer):
    client = MODEL.token_clients["OperatorClient"].client_id
    assert status(issuer, resigned(issuer, client_id=None, aud=client, scope="loyalty/ops.write")) == 200


def test_unsigned_or_otherwise_signed_tokens_are_refused(issuer):
    unsigned = jwt.encode(jwt.decode(issuer.issue("op"), options={"verify_signature": False}), None, algorithm="none")
    assert status(issuer, unsigned) == 401
    hmac = jwt.encode(jwt.decode(issuer.issue("op"), options={"verify_signature": False}), "k" * 32,
                      algorithm="HS256", headers={"kid": issuer.kid})
    assert status(issuer, hmac) == 401
    assert status(issuer, LocalIssuer(MODEL).issue("op")) == 401  # another key, same issuer URL


def test_the_token_must_be_in_the_identity_source(issuer):
    with pytest.raises(Denied) as refused:
        issuer.verify(request(issuer.issue("op"), header="X-Token"), ADJUST.authorizer, ADJUST.scopes)
    assert refused.value.response.status == 401
    assert status(issuer, None) == 401


def test_the_issuer_picks_the_client_whose_scopes_cover_the_request(issuer):
    backend = MODEL.token_clients["BackendClient"]
    operator = MODEL.token_clients["OperatorClient"]
    assert issuer.client_for(["loyalty/members.read"]) == backend.client_id
    assert issuer.client_for(["loyalty/ops.write"]) == operator.client_id
    assert issuer.jwks()["keys"][0]["kid"] == issuer.kid
