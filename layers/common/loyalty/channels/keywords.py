"""The keywords members reply with, on every channel: opt-out, opt-in, balance, help,
check-in.
Matching is width- and case-insensitive (NFKC, casefold) and the whole message must be
the keyword, punctuation around it aside. Pure: no I/O."""
from __future__ import annotations

import unicodedata

KEYWORDS = {  # intent -> the words, as normalise_keyword leaves them
    # Twilio opts a number out on its standard keywords (STOPALL, CANCEL, END, QUIT,
    # REVOKE, OPTOUT as well as STOP, UNSUBSCRIBE) whatever we do: mirror all of them.
    "opt_out": ("stop", "stop all", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
                "退订", "退訂", "t", "td", "r"),
    "opt_in": ("同意", "yes", "agree", "start", "unstop"),
    "balance": ("我的积分", "我的積分", "积分", "積分", "points", "bal", "balance"),
    "help": ("help", "info", "帮助", "幫助", "客服"),
    "checkin": ("签到", "簽到", "打卡", "checkin", "check in", "check-in"),
}
_KEYWORD_INTENTS = {word: intent for intent, words in KEYWORDS.items() for word in words}


def normalise_keyword(text: str) -> str:
    """NFKC (full-width letters and spaces become half-width), trimmed, case-folded,
    inner whitespace collapsed to one space: "  ＳＴＯＰ　ＡＬＬ " -> "stop all"."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def classify_keyword(text: str) -> str | None:
    """The intent of a keyword reply: "opt_out", "opt_in", "balance", "help", "checkin", or None.

    The whole message must be the keyword: "please stop sending" is not an opt-out, but
    punctuation around it is tolerated ("STOP.", "退订。", "“TD”")."""
    if not isinstance(text, str):
        return None
    return _KEYWORD_INTENTS.get(_bare(text))


def _bare(text: str) -> str:
    """The normalised message without the punctuation around it."""
    word = normalise_keyword(text)
    start, end = 0, len(word)
    while start < end and (_is_punctuation(word[start]) or word[start].isspace()):
        start += 1
    while end > start and (_is_punctuation(word[end - 1]) or word[end - 1].isspace()):
        end -= 1
    return word[start:end]


# The opt-in words that also say "I agree" to an invitation (a check-in challenge's, E5).
AGREEMENT = ("同意", "agree", "yes")


def is_agreement(text: str) -> bool:
    """同意 / AGREE / YES (as classify_keyword matches them): the answer to an invitation."""
    return isinstance(text, str) and _bare(text) in AGREEMENT
