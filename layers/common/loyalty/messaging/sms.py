"""SMS length rules: GSM-7 (160 characters in one segment, 153 per segment when split)
or UCS-2 (70 / 67) as soon as one character is outside GSM-7. China's domestic counting
includes the 【signature】 and uses 70 / 67 for every message."""
from __future__ import annotations

# The GSM 03.38 basic character set, and the extension table (each costs two septets).
_GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
                 "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def is_gsm7(text: str) -> bool:
    return all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text)


def segments(text: str, *, domestic_cn: bool = False) -> int:
    """How many segments the provider will bill for `text`."""
    if not text:
        return 1
    if domestic_cn:
        return 1 if len(text) <= 70 else -(-len(text) // 67)
    if is_gsm7(text):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2  # characters outside the BMP take two
    return 1 if units <= 70 else -(-units // 67)
