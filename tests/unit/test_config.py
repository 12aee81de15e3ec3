"""Secrets and rule overrides: retried when the read fails for a passing reason, never
cached when it fails, never taken for "not configured", rotated within minutes. A stub
client answers as Secrets Manager and SSM do (botocore's own exception types)."""
import json
import logging
import threading
import time

import pytest
from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError,
                                 NoCredentialsError, ReadTimeoutError)

from loyalty import wiring
from loyalty.adapters import config
from loyalty.errors import ConfigUnreadable, Transient, Unauthorized
from loyalty.web.responses import error_body

SECRET_ID = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ProviderSecrets-AbCdEf"


def client_error(code: str, status: int, operation: str = "GetSecretValue") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)


TRANSIENT = [client_error("ThrottlingException", 400), client_error("InternalServiceError", 500),
             client_error("ServiceUnavailable", 503), EndpointConnectionError(endpoint_url="https://sm"),
             ConnectTimeoutError(endpoint_url="https://sm"), ReadTimeoutError(endpoint_url="https://sm"),
             ConnectionClosedError(endpoint_url="https://sm")]
NOT_TRANSIENT = [client_error("AccessDeniedException", 400), client_error("ResourceNotFoundException", 400),
                 client_error("DecryptionFailure", 400), NoCredentialsError()]


def name(error: BaseException) -> str:
    return error.response["Error"]["Code"] if isinstance(error, ClientError) else type(error).__name__


class Stub:
    """Secrets Manager and SSM: each call takes the next answer (an exception is raised);
    the last answer repeats."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), 0

    def _next(self):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def get_secret_value(self, SecretId):
        assert SecretId == SECRET_ID
        return self._next()

    def get_parameter(self, Name):
        return self._next()


def stored(**values) -> dict:
    return {"SecretString": json.dumps(values)}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws(monkeypatch):
    """Install stub clients: `aws(secretsmanager=Stub(...), ssm=Stub(...))`; the clock and
    the sleeps are the test's."""
    clock, sleeps, clients = Clock(), [], {}
    monkeypatch.setattr(config, "_client", lambda service: clients[service])
    monkeypatch.setattr(config, "_clock", clock)
    monkeypatch.setattr(config, "_sleep", sleeps.append)
    for name in ("TEST_KEY", "WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config.clear_cache()

    def install(**stubs):
        clients.update(stubs)
        return stubs.get("secretsmanager") or stubs.get("ssm")

    install.clock, install.sleeps = clock, sleeps
    yield install
    config.clear_cache()


# --- reading ---------------------------------------------------------------------------

def test_a_secret_is_read_once_and_served_from_the_cache_for_five_minutes(aws):
    stub = aws(secretsmanager=Stub(stored(TEST_KEY="v1"), stored(TEST_KEY="v2")))
    assert config.secret("TEST_KEY", SECRET_ID) == "v1"
    aws.clock.now += 299
    assert config.secret("TEST_KEY", SECRET_ID) == "v1" and stub.calls == 1
    aws.clock.now += 2                                               # rotated: seen within the TTL
    assert config.secret("TEST_KEY", SECRET_ID) == "v2" and stub.calls == 2


def test_a_key_missing_from_a_readable_secret_is_not_configured(aws):
    aws(secretsmanager=Stub(stored(OTHER="x")))
    assert config.secret("TEST_KEY", SECRET_ID) is None
    assert config.secret("TEST_KEY", None) is None                   # no secret at all


def test_an_environment_variable_wins_without_a_read(aws, monkeypatch):
    stub = aws(secretsmanager=Stub(stored(TEST_KEY="from-secret")))
    monkeypatch.setenv("TEST_KEY", "from-env")
    assert config.secret("TEST_KEY", SECRET_ID) == "from-env" and stub.calls == 0


@pytest.mark.parametrize("fault", TRANSIENT, ids=name)
def test_a_passing_fault_is_retried_twice_quickly(aws, fault):
    stub = aws(secretsmanager=Stub(fault, fault, stored(TEST_KEY="v1")))
    assert config.secret("TEST_KEY", SECRET_ID) == "v1"
    assert stub.calls == 3 and len(aws.sleeps) == 2 and sum(aws.sleeps) < 0.5


@pytest.mark.parametrize("fault", TRANSIENT, ids=name)
def test_a_fault_that_lasts_is_transient_and_not_cached(aws, fault):
    stub = aws(secretsmanager=Stub(fault, fault, fault, stored(TEST_KEY="v1")))
    with pytest.raises(Transient) as raised:
        config.secret("TEST_KEY", SECRET_ID)
    assert type(raised.value) is Transient and stub.calls == 3
    assert config.secret("TEST_KEY", SECRET_ID) == "v1"              # the next caller reads again


@pytest.mark.parametrize("fault", NOT_TRANSIENT, ids=name)
def test_a_deployment_fault_is_not_retried_is_logged_as_configuration_and_not_cached(aws, fault, caplog):
    stub = aws(secretsmanager=Stub(fault, stored(TEST_KEY="v1")))
    with caplog.at_level(logging.ERROR, logger=config.__name__), pytest.raises(ConfigUnreadable) as raised:
        config.secret("TEST_KEY", SECRET_ID)
    assert stub.calls == 1 and aws.sleeps == []
    assert any("configuration error" in r.getMessage() and SECRET_ID in r.getMessage() for r in caplog.records)
    assert SECRET_ID not in str(error_body(raised.value)[1])     # the caller is not told the ARN
    assert config.secret("TEST_KEY", SECRET_ID) == "v1"              # fixed: read again at once


@pytest.mark.parametrize("answer", [{"SecretString": "not json"}, {"SecretString": "[1, 2]"},
                                    {"SecretBinary": b"\x00\x01"}])
def test_a_secret_that_is_not_a_json_object_is_a_configuration_error_and_never_logged(aws, answer, caplog):
    aws(secretsmanager=Stub(answer, stored(TEST_KEY="v1")))
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigUnreadable):
        config.secret("TEST_KEY", SECRET_ID)
    assert "not json" not in caplog.text
    assert config.secret("TEST_KEY", SECRET_ID) == "v1"


def test_an_unreadable_secret_is_a_503_never_not_configured(aws, monkeypatch):
    aws(secretsmanager=Stub(client_error("AccessDeniedException", 400)))
    monkeypatch.setenv("SECRETS_ID", SECRET_ID)
    wiring.reset()
    with pytest.raises(Transient) as raised:
        wiring.secret("TEST_KEY")
    assert error_body(raised.value)[0] == 503
    wiring.reset()


def test_concurrent_readers_of_a_missing_value_wait_for_one_read(aws):
    release = threading.Event()

    class Slow(Stub):
        def get_secret_value(self, SecretId):
            release.wait(5)
            return super().get_secret_value(SecretId)

    stub = aws(secretsmanager=Slow(stored(TEST_KEY="v1")))
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(config.secret("TEST_KEY", SECRET_ID))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    release.set()
    for t in threads:
        t.join()
    assert seen == ["v1"] * 8 and stub.calls == 1


# --- rule overrides (SSM) --------------------------------------------------------------

def test_rule_overrides_are_retried_cached_and_never_cached_when_they_fail(aws):
    throttled = client_error("ThrottlingException", 400, "GetParameter")
    stub = aws(ssm=Stub(throttled, throttled, throttled, {"Parameter": {"Value": '{"earn": {"points": 2}}'}}))
    with pytest.raises(Transient):
        config.rule_overrides("/loyalty/rules")
    assert config.rule_overrides("/loyalty/rules") == {"earn": {"points": 2}}
    assert config.rule_overrides("/loyalty/rules") == {"earn": {"points": 2}} and stub.calls == 4


@pytest.mark.parametrize("value", ["{not json", "[]"])
def test_a_rules_parameter_that_is_not_a_json_object_is_a_503_not_a_crash(aws, value):
    aws(ssm=Stub({"Parameter": {"Value": value}}))
    with pytest.raises(ConfigUnreadable) as raised:
        config.rule_overrides("/loyalty/rules")
    assert error_body(raised.value)[0] == 503


def test_a_missing_rules_parameter_is_a_configuration_error(aws):
    stub = aws(ssm=Stub(client_error("ParameterNotFound", 400, "GetParameter")))
    with pytest.raises(ConfigUnreadable):
        config.rule_overrides("/loyalty/rules")
    assert stub.calls == 1


# --- rotation: a webhook's signature failing with the cached secret ---------------------

@pytest.fixture
def deployed(aws, monkeypatch):
    monkeypatch.setenv("SECRETS_ID", SECRET_ID)
    wiring.reset()
    yield aws
    wiring.reset()


def signed_with(expected: str):
    def check():
        if wiring.secret("TEST_KEY") != expected:
            raise Unauthorized("signature does not match")
        return "ok"
    return check


def test_a_signature_failing_with_a_cached_secret_re_reads_it_once_a_minute_at_most(deployed):
    stub = deployed(secretsmanager=Stub(stored(TEST_KEY="old"), stored(TEST_KEY="new")))
    assert wiring.with_fresh_secrets(signed_with("old")) == "ok"
    deployed.clock.now += 30                           # rotated, but what we hold is only 30 s old
    with pytest.raises(Unauthorized):
        wiring.with_fresh_secrets(signed_with("new"))
    assert stub.calls == 1
    deployed.clock.now += 31
    assert wiring.with_fresh_secrets(signed_with("new")) == "ok" and stub.calls == 2
    for _ in range(20):                                # a flood of bad signatures: no more reads
        with pytest.raises(Unauthorized):
            wiring.with_fresh_secrets(signed_with("forged"))
    assert stub.calls == 2
    deployed.clock.now += 61
    with pytest.raises(Unauthorized):
        wiring.with_fresh_secrets(signed_with("forged"))
    assert stub.calls == 3


def test_a_signature_check_that_passes_reads_nothing_more(deployed):
    stub = deployed(secretsmanager=Stub(stored(TEST_KEY="old")))
    for _ in range(5):
        assert wiring.with_fresh_secrets(signed_with("old")) == "ok"
    assert stub.calls == 1


# --- senders: built from the secrets, rebuilt when they change, never "not configured" by a fault

class RecordingClient:
    built: list = []

    def __init__(self, config, **_):
        self.config = config
        RecordingClient.built.append(config.access_token)

    def send(self, to, payload, message_id):
        return ("sent", self.config.access_token)


@pytest.fixture
def whatsapp(deployed, monkeypatch):
    import loyalty.channels.whatsapp as module
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "1234567890")
    monkeypatch.setattr(module, "WhatsAppClient", RecordingClient)
    RecordingClient.built = []
    return deployed


class Record:
    to, message_id = "+85291230001", "m-1"


def test_a_sender_is_built_again_when_its_secret_is_rotated(whatsapp):
    stub = whatsapp(secretsmanager=Stub(stored(WHATSAPP_ACCESS_TOKEN="t1"), stored(WHATSAPP_ACCESS_TOKEN="t2")))
    send = wiring.channel_sender("whatsapp")
    assert send(Record, "whatsapp", {}) == ("sent", "t1")
    assert wiring.channel_sender("whatsapp") is send and RecordingClient.built == ["t1"]
    whatsapp.clock.now += 301
    assert wiring.channel_sender("whatsapp")(Record, "whatsapp", {}) == ("sent", "t2")
    assert RecordingClient.built == ["t1", "t2"] and stub.calls == 2


def test_a_sender_whose_secrets_cannot_be_read_is_retried_not_failed_as_not_configured(whatsapp):
    whatsapp(secretsmanager=Stub(*[client_error("ThrottlingException", 400)] * 3,
                                 stored(WHATSAPP_ACCESS_TOKEN="t1")))
    with pytest.raises(Transient):
        wiring.channel_sender("whatsapp")                   # the message goes back to its queue
    assert wiring.channel_sender("whatsapp")(Record, "whatsapp", {}) == ("sent", "t1")


def test_an_sms_provider_whose_secret_cannot_be_read_is_not_dropped_silently(deployed):
    deployed(secretsmanager=Stub(client_error("AccessDeniedException", 400)))
    with pytest.raises(ConfigUnreadable):
        wiring.channel_sender("sms")


def test_a_sender_without_its_secret_fails_visibly_and_picks_the_secret_up_once_added(whatsapp):
    from loyalty.channels.providers import ProviderError
    whatsapp(secretsmanager=Stub(stored(OTHER="x"), stored(WHATSAPP_ACCESS_TOKEN="t1")))
    with pytest.raises(ProviderError) as failed:
        wiring.channel_sender("whatsapp")(Record, "whatsapp", {})
    assert (failed.value.outcome, failed.value.code) == ("config", "not_configured")
    whatsapp.clock.now += 301
    assert wiring.channel_sender("whatsapp")(Record, "whatsapp", {}) == ("sent", "t1")


# --- the webhooks' edge: a rotated secret is read again before answering 401 ---------------

def test_an_order_callback_signed_with_a_rotated_secret_is_verified_after_one_re_read(deployed, monkeypatch):
    from datetime import datetime, timezone

    from loyalty.errors import Invalid
    from loyalty.web.edge import order_callback
    from loyalty.web.signatures import sign_order_body
    monkeypatch.delenv("ORDER_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("ORDER_WEBHOOK_SECRET_PREVIOUS", raising=False)
    stub = deployed(secretsmanager=Stub(stored(ORDER_WEBHOOK_SECRET="old"), stored(ORDER_WEBHOOK_SECRET="new")))
    now = datetime.now(timezone.utc)
    body = b"{}"   # past the signature, the body is checked: Invalid says the signature held
    with pytest.raises(Invalid):
        order_callback(body, sign_order_body("old", body, int(now.timestamp())), now)
    deployed.clock.now += 120                                  # the order system now signs with the new one
    with pytest.raises(Invalid):
        order_callback(body, sign_order_body("new", body, int(now.timestamp())), now)
    assert stub.calls == 2
    with pytest.raises(Unauthorized):
        order_callback(body, sign_order_body("forged", body, int(now.timestamp())), now)
    assert stub.calls == 2


def test_a_whatsapp_push_signed_with_a_rotated_app_secret_is_verified_after_one_re_read(deployed):
    import hashlib
    import hmac

    from loyalty.errors import Invalid
    from loyalty.web.provider_edge import whatsapp_push
    stub = deployed(secretsmanager=Stub(stored(WHATSAPP_APP_SECRET="old"), stored(WHATSAPP_APP_SECRET="new")))
    body = b"not json"

    def push(secret: str):
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return whatsapp_push({"body": body.decode(), "headers": {"X-Hub-Signature-256": signature}}, None)

    with pytest.raises(Invalid):
        push("old")
    deployed.clock.now += 120
    with pytest.raises(Invalid):
        push("new")
    assert stub.calls == 2
