"""Secrets and parameters read through real clients from the emulator: the answers and
error codes Secrets Manager and SSM give, as config.py classifies them."""
import json

import pytest

from loyalty.adapters import config
from loyalty.errors import ConfigUnreadable


@pytest.fixture
def secrets(fresh_aws, monkeypatch):
    monkeypatch.delenv("TEST_KEY", raising=False)
    config.clear_cache()
    yield fresh_aws.client("secretsmanager")
    config.clear_cache()


def test_a_secret_is_read_and_a_rotation_is_seen_once_the_cache_lets_go(secrets, monkeypatch):
    arn = secrets.create_secret(Name="test-rotation", SecretString=json.dumps({"TEST_KEY": "v1"}))["ARN"]
    assert config.secret("TEST_KEY", arn) == "v1"
    assert config.secret("MISSING_KEY", arn) is None
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"TEST_KEY": "v2"}))
    assert config.secret("TEST_KEY", arn) == "v1"                    # cached
    now = config._clock()
    monkeypatch.setattr(config, "_clock", lambda: now + 61)
    assert config.refresh_secrets(arn) is True
    assert config.secret("TEST_KEY", arn) == "v2"


def test_a_secret_that_does_not_exist_is_a_configuration_error(secrets):
    with pytest.raises(ConfigUnreadable, match="ResourceNotFoundException"):
        config.secret("TEST_KEY", "no-such-secret")


def test_a_rules_parameter_that_does_not_exist_is_a_configuration_error(secrets):
    with pytest.raises(ConfigUnreadable, match="ParameterNotFound"):
        config.rule_overrides("/no/such/parameter")
