"""Request units, as DynamoDB bills them, for every call the bench's handlers make.

Registered on the same boto3 session as the call counter (bench/counting.py). Sizes
follow DynamoDB's item-size rule (attribute names plus values, in UTF-8 bytes; numbers
about one byte per two digits), and the units its pricing page states:
- a write: 1 WRU per KB of the item (rounded up) for the table, and again for each
  global secondary index the item is in before or after the write; ×2 in a transaction
  (a condition check too);
- a read: 1 RRU per 4 KB for a strongly consistent read, half for an eventually
  consistent one, ×2 in a transaction; a Query adds up the items it read before rounding.
An update's size is the item's after the write, read back through a client of its own
(not counted). SQS requests are counted per call (a batch is one request up to 64 KB)."""
from __future__ import annotations

import math
from urllib.parse import urlsplit
from collections import Counter
from dataclasses import dataclass, field

import boto3
import botocore.session

KB = 1024


def value_size(value: dict) -> int:
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0") or "0"
        return len(digits) // 2 + 1 + (1 if v.startswith("-") else 0)
    if kind == "B":
        return len(v) if isinstance(v, (bytes, bytearray)) else len(v.encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: x}) for x in v)
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(x) for k, x in v.items())
    raise ValueError(kind)


def item_size(item: dict | None) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


@dataclass
class Units:
    rru: float = 0.0
    wru: float = 0.0
    sqs_requests: int = 0
    items_written: Counter = field(default_factory=Counter)   # item kind (SK prefix) -> count
    bytes_written: Counter = field(default_factory=Counter)   # item kind -> bytes of the items as written

    def add(self, other: "Units") -> None:
        self.rru += other.rru
        self.wru += other.wru
        self.sqs_requests += other.sqs_requests
        self.items_written.update(other.items_written)
        self.bytes_written.update(other.bytes_written)

    def per(self, n: int) -> "Units":
        each = Units(self.rru / n, self.wru / n, self.sqs_requests / n)
        each.items_written = Counter({k: v / n for k, v in self.items_written.items()})
        each.bytes_written = Counter({k: v / n for k, v in self.bytes_written.items()})
        return each


def kind_of(item: dict) -> str:
    """An item's kind, for storage: its sort key's prefix (LOT, TX, PROFILE, ...)."""
    sk = next((v.get("S", "") for k, v in item.items() if k == "SK"), "")
    return sk.split("#", 1)[0] or "?"


class UnitMeter:
    """Adds up the units of every DynamoDB and SQS call of the default boto3 session."""

    def __init__(self, indexes: dict[str, tuple[str, ...]] | None = None, region: str = "us-east-1"):
        self.units = Units()
        self.indexes = indexes or {}      # GSI name -> its key attributes
        self.region = region
        self._readback: dict[str, object] = {}   # endpoint -> a client there

    def install(self) -> "UnitMeter":
        events = boto3.DEFAULT_SESSION.events
        events.register("after-call.dynamodb", self._dynamodb)
        events.register("after-call.sqs", self._sqs)
        return self

    def reset(self) -> Units:
        """The units so far, and start again from zero."""
        was, self.units = self.units, Units()
        return was

    # --- writes -------------------------------------------------------------------------
    def _client(self, endpoint: str):
        if endpoint not in self._readback:   # a session of its own: its calls are not counted
            self._readback[endpoint] = botocore.session.get_session().create_client(
                "dynamodb", endpoint_url=endpoint, region_name=self.region, aws_access_key_id="bench",
                aws_secret_access_key="bench")
        return self._readback[endpoint]

    def _after_image(self, endpoint: str, table: str, key: dict) -> dict:
        return self._client(endpoint).get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})

    def _write(self, item: dict, factor: int, before: dict | None = None) -> None:
        size = max(item_size(item), item_size(before))
        units = max(1, math.ceil(size / KB))
        in_indexes = sum(1 for keys in self.indexes.values()
                         if all(k in item for k in keys) or (before and all(k in before for k in keys)))
        self.units.wru += factor * units * (1 + in_indexes)
        kind = kind_of(item or before or {})
        self.units.items_written[kind] += 1
        self.units.bytes_written[kind] += item_size(item)

    def _read(self, items: list[dict], consistent: bool, factor: int = 1, per_item: bool = True) -> None:
        scale = (1 if consistent else 0.5) * factor
        if per_item:
            self.units.rru += sum(max(1, math.ceil(item_size(i) / (4 * KB))) for i in items) * scale
        else:
            self.units.rru += max(1, math.ceil(sum(item_size(i) for i in items) / (4 * KB))) * scale

    def _dynamodb(self, parsed=None, model=None, context=None, http_response=None, **kwargs):
        name, params = model.name, (context or {}).get("bench_params") or {}
        if http_response is not None and http_response.status_code >= 400:
            return
        url = urlsplit(http_response.url) if http_response is not None else None
        where = f"{url.scheme}://{url.netloc}" if url else None
        if name == "PutItem":
            self._write(params["Item"], 1)
        elif name == "UpdateItem":
            self._write(self._after_image(where, params["TableName"], params["Key"]), 1)
        elif name == "DeleteItem":
            self._write({}, 1, before=parsed.get("Attributes") or {"SK": params["Key"].get("SK", {"S": "?"})})
        elif name == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    if "PutRequest" in request:
                        self._write(request["PutRequest"]["Item"], 1)
                    else:
                        self._write({}, 1, before=request["DeleteRequest"]["Key"])
        elif name == "TransactWriteItems":
            for entry in params["TransactItems"]:
                (op, body), = entry.items()
                if op == "Put":
                    self._write(body["Item"], 2)
                elif op == "Update":
                    self._write(self._after_image(where, body["TableName"], body["Key"]), 2)
                else:   # Delete, ConditionCheck: the key's item, at least one unit each
                    self._write({}, 2, before=body["Key"])
        elif name == "GetItem":
            self._read([parsed["Item"]] if "Item" in parsed else [{}], params.get("ConsistentRead", False))
        elif name == "BatchGetItem":
            # each key is billed as its own GetItem: at least one unit, found or not
            for table, request in params.get("RequestItems", {}).items():
                found = parsed.get("Responses", {}).get(table, [])
                missing = len(request.get("Keys", [])) - len(found)
                self._read(found + [{}] * max(missing, 0), request.get("ConsistentRead", False))
        elif name in ("Query", "Scan"):
            self._read(parsed.get("Items", []), params.get("ConsistentRead", False), per_item=False)
        elif name == "TransactGetItems":
            self._read([r.get("Item", {}) for r in parsed.get("Responses", [])], True, factor=2)

    def _sqs(self, model=None, **_):
        self.units.sqs_requests += 1

    def remember_params(self, params=None, context=None, model=None, **_):
        """Keep the request's parameters (serialized as DynamoDB's wire format) for after-call."""
        if context is not None and params is not None:
            context["bench_params"] = params


def install(table_description: dict, region: str) -> UnitMeter:
    """A meter on the default session, knowing the table's indexes."""
    indexes = {gsi["IndexName"]: tuple(k["AttributeName"] for k in gsi["KeySchema"])
               for gsi in table_description.get("GlobalSecondaryIndexes", [])}
    meter = UnitMeter(indexes, region)
    boto3.DEFAULT_SESSION.events.register("provide-client-params.dynamodb", meter.remember_params)
    return meter.install()
