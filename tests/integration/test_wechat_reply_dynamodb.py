"""A member's 我的积分 on WeChat, through the webhook's handler against the emulator: the
passive reply, parsed as WeChat parses it (wechatpy, test-only), says what the rules say,
"&" and "<" included, never "&amp;"."""
import json

from tests.orders_only import ORDERS_ONLY
import os
import time
import uuid

from wechatpy import parse_message

from infra.local.resources import local_secret_values
from loyalty import wiring
from loyalty.channels.signatures import wechat_signature
from loyalty.records import Profile
from tests.integration.test_handlers import Context, load_handler, order_event, paid_body

OPENID, ACCOUNT = "oReplyMember_0001", "gh_localaccount"
ITEM = "Tea & Cake <for 2> ]]> deal"


def wechat_event(xml: str) -> dict:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    query = {"signature": wechat_signature(local_secret_values()["WECHAT_TOKEN"], timestamp, nonce),
             "timestamp": timestamp, "nonce": nonce}
    return {"version": "2.0", "routeKey": "POST /webhooks/wechat", "rawPath": "/webhooks/wechat",
            "rawQueryString": "&".join(f"{k}={v}" for k, v in query.items()), "queryStringParameters": query,
            "headers": {"content-type": "text/xml"},
            "requestContext": {"requestId": "req-wx", "stage": "$default", "domainName": "127.0.0.1:3000",
                               "routeKey": "POST /webhooks/wechat",
                               "http": {"method": "POST", "path": "/webhooks/wechat"}},
            "body": xml, "isBase64Encoded": False}


def test_the_passive_reply_to_my_points_reads_as_the_rules_wrote_it(fresh_aws):
    fresh_aws.client("ssm").put_parameter(Name=os.environ["RULES_PARAMETER"], Type="String", Overwrite=True,
                                          Value=json.dumps({"catalog": [{"item_id": "tea", "name": ITEM,
                                                                         "points": 100}], **ORDERS_ONLY}))
    wiring.reset()
    wiring.ledger_store().put_profile(Profile(member_id="m-wx", name="Ana", wechat_openid=OPENID, locale="en",
                                              time_zone="Asia/Shanghai"))
    assert load_handler("order_webhook")(order_event(paid_body(member="m-wx", amount=50000)),
                                         Context())["statusCode"] == 200
    xml = (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
           f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
           f"<Content><![CDATA[我的积分]]></Content><MsgId>{uuid.uuid4().int % 10**18}</MsgId></xml>")
    response = load_handler("wechat_webhook")(wechat_event(xml), Context())
    assert response["statusCode"] == 200 and response["headers"]["Content-Type"].startswith("application/xml")
    reply = parse_message(response["body"])
    assert (reply.type, reply.source, reply.target) == ("text", ACCOUNT, OPENID)
    assert reply.content.startswith("Your points: 520. ")
    assert reply.content.endswith(f"You can redeem: {ITEM}.")
