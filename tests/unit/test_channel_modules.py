"""Where the push parsers live: next to each provider's client, with the plain values
they produce in `pushes` and the keywords in a module of their own; the former single
module still answers for every name it had."""
import subprocess
import sys

from loyalty.channels import (aliyun_inbound, inbound, keywords, pushes, twilio_inbound, wechat_inbound,
                              whatsapp_inbound)

FORMER_NAMES = {
    "EVENTS": pushes, "STATUSES": pushes, "StatusUpdate": pushes, "InboundMessage": pushes, "ChannelEvent": pushes,
    "Parsed": pushes, "classify_keyword": keywords, "normalise_keyword": keywords,
    "parse_whatsapp": whatsapp_inbound, "parse_twilio_status": twilio_inbound,
    "parse_twilio_inbound": twilio_inbound, "parse_wechat": wechat_inbound,
    "parse_aliyun_report": aliyun_inbound, "parse_aliyun_up": aliyun_inbound,
}


def test_the_former_import_path_answers_with_the_same_objects():
    for name, home in FORMER_NAMES.items():
        assert getattr(inbound, name) is getattr(home, name), name


def test_the_parsers_and_keywords_load_no_http_client_and_no_aws_sdk():
    # A webhook function imports the parsers; the clients (requests) and boto3 are the
    # senders' business, and the handler import-time figure counts every module.
    code = ("import sys; import loyalty.channels.whatsapp_inbound, loyalty.channels.twilio_inbound, "
            "loyalty.channels.wechat_inbound, loyalty.channels.aliyun_inbound, loyalty.channels.keywords, "
            "loyalty.channels.inbound; "
            "print(sorted(m for m in ('requests', 'boto3', 'botocore', 'pydantic') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"


def test_every_keyword_is_stored_as_its_normal_form():
    for intent, words in keywords.KEYWORDS.items():
        for word in words:
            assert keywords.normalise_keyword(word) == word, (intent, word)
            assert keywords.classify_keyword(word) == intent
