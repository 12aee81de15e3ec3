"""DynamoDB's answers the emulator never gives, made on purpose."""
from __future__ import annotations


def cancel_next_transaction(client, *codes):
    """The client's next TransactWriteItems is answered as DynamoDB cancels one: with
    these reasons, one per item (as botocore would raise it, without sending anything)."""
    from botocore.awsrequest import AWSResponse
    pending = [codes]

    def answer(**_):
        if not pending:
            return None
        reasons = pending.pop()
        return AWSResponse("https://dynamodb.local", 400, {}, None), {
            "Error": {"Code": "TransactionCanceledException",
                      "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons "
                                 f"[{', '.join(reasons)}]"},
            "CancellationReasons": [{"Code": code} for code in reasons],
            "ResponseMetadata": {"HTTPStatusCode": 400}}

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", answer)
