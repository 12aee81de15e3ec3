"""WeChat's passive reply (the XML answered in the webhook's response): the member sees
exactly the text we meant, as WeChat reads the XML. wechatpy (test-only) stands in for
WeChat's parser, as in test_channel_signatures."""
import time
import uuid
from datetime import datetime, timezone

import pytest
from wechatpy import parse_message

from loyalty.channels.signatures import wechat_signature
from loyalty.messaging.conversations import Outcome
from loyalty.web import provider_edge

TOKEN, OPENID, ACCOUNT = "test-wechat-token", "oAbCdEf123_-x", "gh_0123456789ab"
TEXTS = [
    "您的积分：520。可兑换：Tea & Cake <for 2>。",
    "A&B <b>bold</b> &amp; &lt; already-escaped-looking text",
    "a CDATA end ]]> inside, twice ]]>]]> and at the end ]]>",
    "quotes \" ' and > alone, then ]] and ]>",
    "emoji 🎁 and full-width ＆＜＞",
    "line one\nline two",
]


def push(content: str = "我的积分", to_account: str = ACCOUNT) -> bytes:
    return (f"<xml><ToUserName><![CDATA[{to_account}]]></ToUserName><FromUserName><![CDATA[{OPENID}]]>"
            f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{uuid.uuid4().int % 10**18}</MsgId></xml>").encode()


def event(body: bytes, now: datetime) -> dict:
    timestamp, nonce = str(int(now.timestamp())), "n0nce"
    query = {"signature": wechat_signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    return {"rawPath": "/webhooks/wechat", "queryStringParameters": query, "body": body.decode(),
            "isBase64Encoded": False}


@pytest.fixture
def answering(monkeypatch):
    """wechat_push with the store and the rules out of the way: the push is answered
    `reply`."""
    said = {}
    monkeypatch.setattr(provider_edge, "_secret", lambda name: TOKEN)
    monkeypatch.setattr(provider_edge.wiring, "with_fresh_secrets", lambda check: check())
    monkeypatch.setattr(provider_edge, "_apply", lambda items, now, our_ref=None, **_: [Outcome("reply:x", said["reply"])])

    def answer(reply: str, body: bytes | None = None) -> str:
        said["reply"] = reply
        now = datetime.now(timezone.utc)
        return provider_edge.wechat_push(event(body or push(), now), now)
    return answer


@pytest.mark.parametrize("text", TEXTS)
def test_the_member_reads_exactly_the_reply_text(answering, text):
    xml = answering(text)
    reply = parse_message(xml)
    assert reply.type == "text" and reply.content == text
    assert (reply.source, reply.target) == (ACCOUNT, OPENID)   # from the account, to the member


def test_the_reply_is_addressed_from_the_account_the_member_wrote_to_written_plainly_or_as_cdata(answering):
    plain = push().replace(f"<ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>".encode(),
                           f"<ToUserName>{ACCOUNT}</ToUserName>".encode())
    assert parse_message(answering("hi", plain)).source == ACCOUNT


def test_characters_xml_cannot_carry_are_left_out_rather_than_break_the_reply(answering):
    assert parse_message(answering("a\x00b\x0bc\ufffed")).content == "abcd"
