"""mask_phones: phone numbers in provider texts are masked, other numbers are left alone."""
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.privacy import mask_contact, mask_phone, mask_phones


@pytest.mark.parametrize("text, expected", [
    # the providers' own error texts
    ("The 'To' number +14155550123 is not a valid phone number.",
     "The 'To' number +1415****23 is not a valid phone number."),
    ("Mobile number +8613800138000 illegal", "Mobile number +86138****8000 illegal"),
    ("Recipient phone number 14155550123 not in allowed list", "Recipient phone number 1415****23 not in allowed list"),
    ("手机号码13800138000格式错误", "手机号码1380****00格式错误"),            # CJK around it, domestic number
    # E.164 with and without "+", spaces, dashes, parentheses inside
    ("to +86 138 0013 8000", "to +86138****8000"),
    ("to +86-138-0013-8000.", "to +86138****8000."),
    ("call (415) 555-0123 now", "call 415****23 now"),
    ("(+86) 13800138000", "+86138****8000"),
    ("+44 7700 900123", "+4477****23"),
    ("+1 415 555 0123", "+1415****23"),
    ("wa_id=8613800138000;", "wa_id=86138****8000;"),
    ("number:12345678", "number:123****78"),                                    # 8 digits: a phone
    # several in one text, and codes next to them
    ("+8613800138000 131047 and 14155550123", "+86138****8000 131047 and 1415****23"),
])
def test_phone_numbers_are_masked(text, expected):
    assert mask_phones(text) == expected


@pytest.mark.parametrize("text", [
    "(#131047) Re-engagement message",                   # WhatsApp codes
    "Error 21610: Attempt to send to unsubscribed recipient",
    "codes 131047 21610 30007",                          # separate codes are not joined into a number
    "isv.BUSINESS_LIMIT_CONTROL Permits:10",
    "1234567 points",                                    # seven digits
    "amount 12345678.90, total 1,234,567,890",           # decimals and grouped amounts
    "on 2024-05-01 at 12:00:00, 2024-05-01T12:00:00Z",  # dates and times
    "SM0123456789abcdef0123456789abcdef",                # ids with digits inside
    "wamid.HBgLMTQxNTU1NTAxMjMVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
    "rid: 6540a1b2-12345678-1234abcd",
    "",
])
def test_other_numbers_are_left_alone(text):
    assert mask_phones(text) == text


def test_none_stays_none():
    assert mask_phones(None) is None


@pytest.mark.parametrize("number, expected", [
    ("+8613800138000", "+86138****8000"), ("14155550123", "1415****23"), ("13800138000", "1380****00"),
    ("+85291234567", "+8529****67"), ("12345678", "123****78"), ("1234567", "1234567"),
])
def test_one_number_keeps_a_prefix_and_a_short_tail(number, expected):
    assert mask_phone(number) == expected


def test_contacts_in_views_phones_and_openids():
    assert mask_contact("+8613800138000") == "+86138****8000"
    assert mask_contact("oAbc123456789xyz") == "oAbc*********xyz"
    assert mask_contact(None) is None and mask_contact("") == ""


phones = st.builds(lambda plus, cc, rest: ("+" if plus else "") + cc + rest, st.booleans(),
                   st.sampled_from(["1", "44", "86", "852", "65"]), st.text("0123456789", min_size=7, max_size=11))
words = st.text(st.sampled_from(list("abc XYZ:;,()'错误号码")), max_size=12)


@given(before=words, phone=phones, after=words)
def test_no_phone_survives_in_any_sentence_and_masking_twice_changes_nothing(before, phone, after):
    # a phone only stands alone: not glued to letters or digits on either side
    text = f"{before} {phone} {after}"
    masked = mask_phones(text)
    assert phone.lstrip("+") not in masked
    assert not re.search(r"\d{8}", masked.replace(" ", "").replace("(", "").replace(")", ""))
    assert mask_phones(masked) == masked
