"""Phone numbers out of texts we keep or log (DESIGN.md: no full phone numbers in logs).

Providers echo the destination in their error texts ("The 'To' number +14155550123 is
not a valid phone number", "Mobile number 13800138000 illegal", "Recipient phone number
14155550123 not in allowed list"). Those texts enter our system at two boundaries, and
are masked there, once: `ProviderError` (channels/providers.py, every client's send
errors) and the receipt parsers (channels/inbound.py, failure reasons in status pushes).
What is stored after that (the outbox history, shown by GET /members/{id}/messages) and
what is logged (retry reasons, outcomes) is already masked.

The rule, for `mask_phones`:
- a phone number is a run of 8 or more digits, with an optional leading "+" and single
  spaces, dashes or parentheses between digit groups ("+86 138-0013-8000",
  "(415) 555-0123"); a space or dash after a group of 5+ digits ends the number, so that
  "131047 21610" stays two error codes;
- it is not a phone when it is part of a word or an id (ASCII letters or digits right
  before or after: "SM0123456789abcdef", "wamid.HBgL..."), what is left of a masked one
  ("****8000"), the integer part of a decimal ("12345678.90"), or an ISO date
  ("2024-05-01");
- shorter numbers are left alone: error codes (131047, 21610), amounts, counts;
- a phone keeps its "+", a country-code-ish head and a short tail, the middle becomes
  "****" (a fixed width, so the length is not given away either):
  +8613800138000 -> +86138****8000, 14155550123 -> 1415****23, 13800138000 -> 1380****00.
Masking a masked text changes nothing.
"""
from __future__ import annotations

import re

MIN_DIGITS = 8

_GROUP = r"(?:\(\+?\d+\)|\+?\d+)"          # 138, +86, (415), (+86)
_CANDIDATE = re.compile(
    r"(?<![A-Za-z\d*])(?<!\d-)"         # not inside a word, an id, a masked or dash-joined number
    r"(?!\d{4}-\d{2}-\d{2}(?!\d))"       # not an ISO date
    rf"{_GROUP}(?:[ \-]?{_GROUP})*"
    r"(?![A-Za-z\d])(?![.,]\d)")         # not followed by letters, or a decimal part
_SPLIT = re.compile(r"(?<=\d{5})\)?[ \-](?=\(?\+?\d)")   # a separator after a 5+ digit group


def mask_phone(number: str) -> str:
    """One phone number, masked (see the module docstring); fewer than 8 digits: as given."""
    digits = "".join(ch for ch in number if ch.isdigit())
    n = len(digits)
    if n < MIN_DIGITS:
        return number
    head = 3 + (n >= 11) + (n >= 13)      # 8-10 digits: 3, 11-12: 4, 13-15 (+86 mobiles): 5
    tail = 4 if n >= 13 else 2
    return ("+" if number.lstrip("( ").startswith("+") else "") + digits[:head] + "****" + digits[-tail:]


def _mask_candidate(match: re.Match) -> str:
    text, out, pos = match.group(0), [], 0
    for sep in _SPLIT.finditer(text):   # "131047 21610": two numbers, each judged alone
        out += [mask_phone(text[pos:sep.start()]), sep.group(0)]
        pos = sep.end()
    return "".join(out) + mask_phone(text[pos:])


def mask_phones(text: str | None) -> str | None:
    """`text` with every phone number in it masked (rule: the module docstring)."""
    if not text:
        return text
    return _CANDIDATE.sub(_mask_candidate, text)


def mask_contact(value: str | None) -> str | None:
    """A member's contact (E.164 number or WeChat OpenID) for views and logs: a phone as
    `mask_phone`; anything else its first 4 and last 3 characters, enough to recognise."""
    if not value:
        return value
    if re.fullmatch(r"\+?[\d \-()]+", value) and sum(ch.isdigit() for ch in value) >= MIN_DIGITS:
        return mask_phone(value)
    return value[:4] + "*" * max(len(value) - 7, 3) + value[-3:]
