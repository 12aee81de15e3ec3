"""A botocore DynamoDB client that answers from Python, with no network: each call's
parameters go to `answer(operation, params)`, which returns the parsed response or
raises `Answer(code, **fields)` for DynamoDB's error. It hooks botocore's own
`before-call` event (as botocore's Stubber does), so everything above botocore, PynamoDB
included, runs as it would against DynamoDB."""
from __future__ import annotations

from functools import cache
from typing import Callable

from botocore.awsrequest import AWSResponse


class Answer(Exception):
    """DynamoDB's error answer: `code` and extra fields (CancellationReasons, ...)."""

    def __init__(self, code: str, **fields):
        super().__init__(code)
        self.code, self.fields = code, fields


@cache
def _session():
    import botocore.session
    return botocore.session.get_session()  # one: the service model loads once per test run


class StubDynamo:
    """`client` is the botocore client; `calls` the (operation, params) it was given."""

    def __init__(self, answer: Callable[[str, dict], dict]):
        self.answer = answer
        self.calls: list[tuple[str, dict]] = []
        self.client = _session().create_client("dynamodb", region_name="us-east-1", aws_access_key_id="stub",
                                               aws_secret_access_key="stub")
        self.client.meta.events.register("before-parameter-build.dynamodb", self._params)
        self.client.meta.events.register("before-call.dynamodb", self._call)

    def _params(self, params, model, **_):
        self.calls.append((model.name, params))

    def _call(self, model, **_):
        operation, params = self.calls[-1]
        try:
            parsed, status = self.answer(operation, params), 200
        except Answer as error:
            parsed = {"Error": {"Code": error.code, "Message": "stub"}, **error.fields}
            status = 400
        parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status, "HTTPHeaders": {}})
        return AWSResponse("https://stub", status, {}, None), parsed

    def params(self, operation: str) -> list[dict]:
        return [params for name, params in self.calls if name == operation]


def readable(request: dict, expression: str = "ConditionExpression") -> str:
    """A request's expression with its placeholders put back: `#0 = :0` -> `profile = 'x'`."""
    from boto3.dynamodb.types import TypeDeserializer
    text = request.get(expression, "")
    values = request.get("ExpressionAttributeValues", {})
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(name, repr(TypeDeserializer().deserialize(value)))
    for name, attribute in sorted(request.get("ExpressionAttributeNames", {}).items(), key=lambda kv: -len(kv[0])):
        text = text.replace(name, attribute)
    return text
