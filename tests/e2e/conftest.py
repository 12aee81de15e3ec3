"""End-to-end: the whole local stack in a subprocess (as `make run` starts it), called
over a socket as an order system, an operator or the scheduler would."""
import json
import os
import time
import uuid

import pytest
import requests

from infra.local.testing import spawn_local_stack
from tests.orders_only import ORDERS_ONLY_JSON
from loyalty.web.signatures import sign_order_body

SECRET = "local-order-secret"


# Every stack these tests start runs the order-only rules (tests/orders_only.py) unless it
# says otherwise (test_engagement_e2e starts its own with the defaults).
os.environ.setdefault("LOCAL_RULES", ORDERS_ONLY_JSON)


@pytest.fixture(scope="session")
def stack():
    with spawn_local_stack(env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as running:
        yield running


class Api:
    """A thin client: the raw HTTP calls a caller would make."""

    def __init__(self, base: str, token: str | None = None):
        self.base = base
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.base + path, timeout=60, **kw)

    def put(self, path: str, body, **kw) -> requests.Response:
        return self.http.put(self.base + path, json=body, timeout=60, **kw)

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return self.http.post(self.base + path, json=body, timeout=60, **kw)

    def order(self, body: dict | bytes, *, signed_at: int | None = None, secret: str = SECRET,
              headers: dict | None = None) -> requests.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        signature = sign_order_body(secret, raw, signed_at if signed_at is not None else int(time.time()))
        return requests.post(self.base + "/webhooks/orders", data=raw, timeout=60,
                             headers={"Content-Type": "application/json", "X-Signature": signature, **(headers or {})})

    def balance(self, member: str) -> int:
        response = self.get(f"/members/{member}/points")
        assert response.status_code == 200, response.text
        return response.json()["balance"]

    def schedule(self, function: str, at: str) -> dict:
        response = self.post(f"/_local/schedules/{function}", {"time": at})
        assert response.status_code == 200, response.text
        return response.json()


def token(base: str, **claims) -> str:
    """An access token from the local user pool (POST /_local/token): all four scopes
    unless `scopes=[...]` says otherwise."""
    response = requests.post(base + "/_local/token", json=claims, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="session")
def operator_token(stack) -> str:
    return token(stack.api_url, subject="e2e-operator", expires_in=86400)


@pytest.fixture
def api(stack, operator_token):
    """A caller holding every scope (an operator's console and a member backend in one)."""
    return Api(stack.api_url, operator_token)


@pytest.fixture
def anonymous(stack):
    """A caller without a token."""
    return Api(stack.api_url)


@pytest.fixture
def member():
    """A member id of this test's own: tests share one stack and never see each other."""
    return f"m-{uuid.uuid4().hex[:12]}"


def paid(member: str, order_id: str, amount: int, occurred_at: str = "2026-11-20T14:03:00+08:00",
         event_id: str | None = None, currency: str = "CNY") -> dict:
    return {"event_id": event_id or f"{order_id}-paid", "type": "order.paid", "occurred_at": occurred_at,
            "order": {"order_id": order_id, "member_id": member, "amount_minor": amount, "currency": currency}}
