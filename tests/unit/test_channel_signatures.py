"""Provider webhook signatures: the vectors of CHANNELS.md, exactly, then cross-checks
against the providers' own SDKs (twilio, wechatpy; test-only reference clients)."""
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from loyalty.channels.signatures import (
    sign_whatsapp, twilio_signature, verify_shared_token, verify_twilio, verify_wechat, verify_whatsapp,
    wechat_signature, whatsapp_verify_challenge,
)
from loyalty.errors import Misconfigured, Unauthorized

ROOT = Path(__file__).resolve().parents[2]

# --- CHANNELS.md vectors ----------------------------------------------------------------

WHATSAPP_BODY = b'{"object":"whatsapp_business_account"}'
WHATSAPP_SIGNATURE = "sha256=e790291ff924369c1f80c8b2cc24fb9ccd37600d883a729059d4bbfa632c882b"

TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
                 "From": "+14158675309", "To": "+18005551212"}
TWILIO_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_whatsapp_vector():
    assert sign_whatsapp(WHATSAPP_BODY, "app_secret") == WHATSAPP_SIGNATURE
    verify_whatsapp(WHATSAPP_BODY, WHATSAPP_SIGNATURE, "app_secret")


def test_twilio_vector():
    assert twilio_signature(TWILIO_URL, TWILIO_PARAMS, "12345") == TWILIO_SIGNATURE
    verify_twilio(TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE, "12345")


def test_wechat_vector():
    assert wechat_signature("test", "1410685589", "test") == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
    verify_wechat({"signature": "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", "timestamp": "1410685589",
                   "nonce": "test"}, "test")


# --- WhatsApp ---------------------------------------------------------------------------

def _hmac_sha256_by_hand(key: bytes, message: bytes) -> str:
    """RFC 2104 from its definition, independent of the hmac module."""
    block = 64
    key = hashlib.sha256(key).digest() if len(key) > block else key
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(k ^ 0x36 for k in key) + message).digest()
    return hashlib.sha256(bytes(k ^ 0x5C for k in key) + inner).hexdigest()


@settings(max_examples=200)
@given(body=st.binary(max_size=2048), secret=st.text(min_size=1, max_size=100))
def test_whatsapp_signature_matches_an_independent_hmac(body, secret):
    header = sign_whatsapp(body, secret)
    assert header == "sha256=" + _hmac_sha256_by_hand(secret.encode(), body)
    verify_whatsapp(body, header, secret)


def test_whatsapp_accepts_uppercase_hex_and_surrounding_space():
    verify_whatsapp(WHATSAPP_BODY, "sha256=" + WHATSAPP_SIGNATURE[7:].upper(), "app_secret")
    verify_whatsapp(WHATSAPP_BODY, f"  {WHATSAPP_SIGNATURE} ", "app_secret")


@pytest.mark.parametrize("body, header, secret", [
    (WHATSAPP_BODY + b" ", WHATSAPP_SIGNATURE, "app_secret"),                       # altered body
    (b'{"object": "whatsapp_business_account"}', WHATSAPP_SIGNATURE, "app_secret"),  # re-serialised
    (WHATSAPP_BODY, WHATSAPP_SIGNATURE, "other_secret"),                            # wrong secret
    (WHATSAPP_BODY, None, "app_secret"),                                            # missing header
    (WHATSAPP_BODY, "", "app_secret"),
    (WHATSAPP_BODY, WHATSAPP_SIGNATURE[7:], "app_secret"),                          # no sha256= prefix
    (WHATSAPP_BODY, "sha1=" + WHATSAPP_SIGNATURE[7:], "app_secret"),
    (WHATSAPP_BODY, "sha256=", "app_secret"),
    (WHATSAPP_BODY, WHATSAPP_SIGNATURE[:-1], "app_secret"),                         # truncated
    (WHATSAPP_BODY, "sha256=é" + WHATSAPP_SIGNATURE[8:], "app_secret"),             # non-ASCII
])
def test_whatsapp_refuses(body, header, secret):
    with pytest.raises(Unauthorized):
        verify_whatsapp(body, header, secret)


def test_whatsapp_without_a_secret_is_a_configuration_error():
    with pytest.raises(Misconfigured):
        verify_whatsapp(WHATSAPP_BODY, WHATSAPP_SIGNATURE, "")


def test_whatsapp_challenge_is_echoed_for_our_token():
    params = {"hub.mode": "subscribe", "hub.verify_token": "local-verify-token", "hub.challenge": "1158201444"}
    assert whatsapp_verify_challenge(params, "local-verify-token") == "1158201444"
    # multi-value query parameters (API Gateway's multiValueQueryStringParameters)
    assert whatsapp_verify_challenge({k: [v] for k, v in params.items()}, "local-verify-token") == "1158201444"


@pytest.mark.parametrize("params", [
    {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
    {"hub.mode": "unsubscribe", "hub.verify_token": "local-verify-token", "hub.challenge": "1"},
    {"hub.verify_token": "local-verify-token", "hub.challenge": "1"},
    {"hub.mode": "subscribe", "hub.challenge": "1"},
    {"hub.mode": "subscribe", "hub.verify_token": "local-verify-token"},
    {"hub.mode": "subscribe", "hub.verify_token": "jeton-vérifié", "hub.challenge": "1"},
    {},
])
def test_whatsapp_challenge_refused(params):
    with pytest.raises(Unauthorized):
        whatsapp_verify_challenge(params, "local-verify-token")


# --- Twilio -----------------------------------------------------------------------------

class MultiDict(dict):
    """What the SDK expects for repeated form fields (Flask's MultiDict has getall)."""

    def getall(self, name):
        return self[name]


@pytest.mark.parametrize("signed_url, received_url", [
    ("https://mycompany.com/myapp.php?foo=1&bar=2", "https://mycompany.com:443/myapp.php?foo=1&bar=2"),
    ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "https://mycompany.com/myapp.php?foo=1&bar=2"),
    ("http://mycompany.com/myapp.php", "http://mycompany.com:80/myapp.php"),
    ("http://mycompany.com:80/myapp.php", "http://mycompany.com/myapp.php"),
])
def test_twilio_default_port_added_or_removed(signed_url, received_url):
    verify_twilio(received_url, TWILIO_PARAMS, twilio_signature(signed_url, TWILIO_PARAMS, "12345"), "12345")


@pytest.mark.parametrize("signed_url, received_url", [
    ("https://mycompany.com:8443/myapp.php", "https://mycompany.com/myapp.php"),  # not a default port
    ("https://mycompany.com/myapp.php", "https://mycompany.com:8443/myapp.php"),
    ("https://mycompany.com/myapp.php", "https://mycompany.com:80/myapp.php"),     # http's port on https
    ("https://mycompany.com/myapp.php", "http://mycompany.com/myapp.php"),
    ("https://mycompany.com/myapp.php?foo=1&bar=2", "https://mycompany.com/myapp.php?bar=2&foo=1"),
])
def test_twilio_other_url_changes_are_refused(signed_url, received_url):
    with pytest.raises(Unauthorized):
        verify_twilio(received_url, TWILIO_PARAMS, twilio_signature(signed_url, TWILIO_PARAMS, "12345"), "12345")


@pytest.mark.parametrize("params, header, token", [
    ({**TWILIO_PARAMS, "Digits": "1235"}, TWILIO_SIGNATURE, "12345"),         # altered field
    ({**TWILIO_PARAMS, "Extra": "x"}, TWILIO_SIGNATURE, "12345"),             # added field
    ({k: v for k, v in TWILIO_PARAMS.items() if k != "To"}, TWILIO_SIGNATURE, "12345"),
    (TWILIO_PARAMS, TWILIO_SIGNATURE, "54321"),                              # wrong token
    (TWILIO_PARAMS, None, "12345"),                                          # missing header
    (TWILIO_PARAMS, "", "12345"),
    (TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8", "12345"),
    (TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=é", "12345"),
])
def test_twilio_refuses(params, header, token):
    with pytest.raises(Unauthorized):
        verify_twilio(TWILIO_URL, params, header, token)


def test_twilio_without_a_token_is_a_configuration_error():
    with pytest.raises(Misconfigured):
        verify_twilio(TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE, "")


def test_twilio_repeated_fields_sign_every_value_in_sorted_order():
    params = {"MessagingBinding.Address": ["+18550000000", "+18330000000"], "Body": "hi"}
    expected = hmac.new(b"tok", (TWILIO_URL + "Bodyhi" + "MessagingBinding.Address+18330000000"
                                 + "MessagingBinding.Address+18550000000").encode(), hashlib.sha1).digest()
    import base64
    assert twilio_signature(TWILIO_URL, params, "tok") == base64.b64encode(expected).decode()
    # the order in which the values arrived does not matter
    reordered = {"Body": ["hi"], "MessagingBinding.Address": ["+18330000000", "+18550000000"]}
    verify_twilio(TWILIO_URL, reordered, twilio_signature(TWILIO_URL, params, "tok"), "tok")


def test_twilio_repeated_identical_values_verify_both_ways():
    # CHANNELS.md signs every value; Twilio's SDKs sign distinct values (sorted(set(...))).
    params = {"Field": ["1", "1", "2"], "Body": "x"}
    sdk = RequestValidator("tok").compute_signature(TWILIO_URL, MultiDict(params))
    assert sdk != twilio_signature(TWILIO_URL, params, "tok")
    verify_twilio(TWILIO_URL, params, sdk, "tok")
    verify_twilio(TWILIO_URL, params, twilio_signature(TWILIO_URL, params, "tok"), "tok")


_name = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FFF), min_size=1, max_size=12)
_value = st.text(max_size=30)
_path = st.lists(st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd", "Lo")), min_size=1,
                         max_size=8), max_size=3).map(lambda parts: "/" + "/".join(parts))
_query = st.lists(st.tuples(st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.from_regex(r"[A-Za-z0-9]{0,5}",
                  fullmatch=True)), max_size=3).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))


@st.composite
def _urls(draw):
    scheme = draw(st.sampled_from(["https", "http"]))
    host = draw(st.sampled_from(["example.com", "hooks.example.cn", "127.0.0.1", "api.example.org"]))
    port = draw(st.sampled_from(["", ":443", ":80", ":8080", ":3000"]))
    query = draw(_query)
    return f"{scheme}://{host}{port}{draw(_path)}" + (f"?{query}" if query else "")


@settings(max_examples=300, deadline=None)
@given(url=_urls(), params=st.dictionaries(_name, st.lists(_value, min_size=1, max_size=3), max_size=8),
       token=st.text(min_size=1, max_size=40))
def test_twilio_agrees_with_the_sdk_request_validator(url, params, token):
    sdk = RequestValidator(token)
    # the SDK's signature verifies with us (repeated identical values included) ...
    verify_twilio(url, params, sdk.compute_signature(url, MultiDict(params)), token)
    # ... and ours with the SDK, which signs distinct values only
    distinct = {name: sorted(set(values)) for name, values in params.items()}
    ours = twilio_signature(url, distinct, token)
    assert sdk.validate(url, MultiDict(distinct), ours)
    assert ours == sdk.compute_signature(url, MultiDict(distinct))


@settings(max_examples=100, deadline=None)
@given(path=_path, params=st.dictionaries(_name, _value, max_size=6), token=st.text(min_size=1, max_size=40),
       scheme=st.sampled_from(["https", "http"]), with_port=st.booleans())
def test_twilio_port_variants_agree_with_the_sdk(path, params, token, scheme, with_port):
    port = {"https": ":443", "http": ":80"}[scheme]
    signed = f"{scheme}://example.com{port if with_port else ''}{path}"
    received = f"{scheme}://example.com{'' if with_port else port}{path}"
    sdk = RequestValidator(token)
    verify_twilio(received, params, sdk.compute_signature(signed, params), token)
    assert sdk.validate(received, params, twilio_signature(signed, params, token))


# --- WeChat -----------------------------------------------------------------------------

def _wechat_query(token="local-wechat-token", timestamp="1803520000", nonce="1405913842"):
    return {"signature": wechat_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}


@settings(max_examples=300)
@given(token=st.text(min_size=1, max_size=32), timestamp=st.from_regex(r"[0-9]{1,11}", fullmatch=True),
       nonce=st.text(max_size=32))
def test_wechat_agrees_with_wechatpy(token, timestamp, nonce):
    signature = wechat_signature(token, timestamp, nonce)
    check_signature(token, signature, timestamp, nonce)  # raises if wechatpy disagrees
    verify_wechat({"signature": signature, "timestamp": timestamp, "nonce": nonce}, token)
    with pytest.raises(InvalidSignatureException):
        check_signature(token + "x", signature, timestamp, nonce)
    with pytest.raises(Unauthorized):
        verify_wechat({"signature": signature, "timestamp": timestamp, "nonce": nonce}, token + "x")


def test_wechat_accepts_list_values_and_uppercase_hex():
    query = _wechat_query()
    verify_wechat({k: [v] for k, v in query.items()}, "local-wechat-token")
    verify_wechat({**query, "signature": query["signature"].upper()}, "local-wechat-token")
    verify_wechat({**query, "echostr": "6120384512960032"}, "local-wechat-token")  # the GET handshake


@pytest.mark.parametrize("query", [
    {**_wechat_query(), "nonce": "other"},
    {**_wechat_query(), "timestamp": "1803520001"},
    {**_wechat_query(), "signature": "0" * 40},
    {**_wechat_query(), "signature": "é" * 40},
    _wechat_query(token="another-token"),
    {k: v for k, v in _wechat_query().items() if k != "signature"},
    {k: v for k, v in _wechat_query().items() if k != "timestamp"},
    {k: v for k, v in _wechat_query().items() if k != "nonce"},
    {},
])
def test_wechat_refuses(query):
    with pytest.raises(Unauthorized):
        verify_wechat(query, "local-wechat-token")


def test_wechat_timestamp_window_when_now_is_given():
    query = _wechat_query(timestamp="1803520000")
    verify_wechat(query, "local-wechat-token", now=1803520000 + 300, tolerance_s=300)
    verify_wechat(query, "local-wechat-token", now=1803520000 - 300, tolerance_s=300)
    verify_wechat(query, "local-wechat-token")  # no clock, no window
    with pytest.raises(Unauthorized, match="window"):
        verify_wechat(query, "local-wechat-token", now=1803520000 + 301, tolerance_s=300)
    with pytest.raises(Unauthorized, match="window"):
        verify_wechat(query, "local-wechat-token", now=1803520000 - 61, tolerance_s=60)
    odd = _wechat_query(timestamp="yesterday")
    verify_wechat(odd, "local-wechat-token")
    with pytest.raises(Unauthorized, match="unix seconds"):
        verify_wechat(odd, "local-wechat-token", now=1803520000)


def test_wechat_without_a_token_is_a_configuration_error():
    with pytest.raises(Misconfigured):
        verify_wechat(_wechat_query(token=""), "")


# --- Aliyun (no signature: a shared token in the callback URL) --------------------------

def test_shared_token():
    verify_shared_token("s3cr3t-Token_value", "s3cr3t-Token_value")
    for given_token in (None, "", "s3cr3t-token_value", "s3cr3t-Token_valu", "s3cr3t-Token_value ", "jeton-é"):
        with pytest.raises(Unauthorized):
            verify_shared_token(given_token, "s3cr3t-Token_value")
    with pytest.raises(Misconfigured):
        verify_shared_token("", "")


# --- the reference clients stay in the tests --------------------------------------------

def test_provider_sdks_are_never_imported_by_the_layer():
    imports = re.compile(r"^\s*(?:import|from)\s+(?:twilio|wechatpy)\b", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "layers").rglob("*.py") if imports.search(p.read_text())]
    assert offenders == []
