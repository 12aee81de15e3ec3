"""The provider push parsers and the keywords under their former, single import path.

They live next to each client now (`whatsapp_inbound`, `twilio_inbound`,
`wechat_inbound`, `aliyun_inbound`), with the plain values they produce in `pushes` and
the keywords in `keywords`. This module only re-exports them, so that code importing
`loyalty.channels.inbound` keeps working; new code imports the provider's module.
"""
from __future__ import annotations

from .aliyun_inbound import parse_aliyun_report, parse_aliyun_up
from .keywords import KEYWORDS, classify_keyword, normalise_keyword
from .pushes import EVENTS, STATUSES, ChannelEvent, InboundMessage, Parsed, StatusUpdate
from .twilio_inbound import parse_twilio_inbound, parse_twilio_status
from .wechat_inbound import parse_wechat
from .whatsapp_inbound import parse_whatsapp

__all__ = [
    "EVENTS", "KEYWORDS", "STATUSES", "ChannelEvent", "InboundMessage", "Parsed", "StatusUpdate", "classify_keyword",
    "normalise_keyword", "parse_aliyun_report", "parse_aliyun_up", "parse_twilio_inbound", "parse_twilio_status",
    "parse_wechat", "parse_whatsapp",
]
