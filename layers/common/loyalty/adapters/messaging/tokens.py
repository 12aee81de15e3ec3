"""The WeChat access token every sender of an account shares (loyalty.channels.wechat's
TokenStore): TOKEN#wechat#<appid> / TOKEN with the token, its expiry (epoch seconds) and a
`ttl` a day later so stale items go away. The refresher's lease is an item of the same
shape under "<appid>#refresh"."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException

from ...errors import Transient
from .base import CONDITION_FAILED, TableItem, bind, response_code


class TokenItem(TableItem):
    token = UnicodeAttribute()
    expires_at = NumberAttribute()
    ttl = TTLAttribute()


def token_key(appid: str) -> tuple[str, str]:
    return f"TOKEN#wechat#{appid}", "TOKEN"


class DynamoTokenStore:
    """Implements loyalty.channels.wechat.TokenStore on the loyalty table. Every failure
    but a lost race is Transient: without a token nothing can be sent, and the queue
    retries the message."""

    def __init__(self, table_name: str, client: Any | None = None):
        self.table = table_name
        self._client = client
        self._model: type[TokenItem] | None = None

    @property
    def model(self) -> type[TokenItem]:
        if self._model is None:
            if self._client is None:
                import boto3  # on first use, not at handler import
                self._client = boto3.client("dynamodb")
            self._model = bind(TokenItem, self.table, self._client)
        return self._model

    def get(self, appid: str) -> tuple[str, float] | None:
        try:
            item = self.model.get(*token_key(appid), consistent_read=True)
        except self.model.DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise Transient(f"token store: {response_code(exc) or type(exc.cause).__name__}") from exc
        return item.token, float(item.expires_at)

    def put_if_newer(self, appid: str, token: str, expires_at: float, replaces: str | None) -> bool:
        model = self.model
        item = model(*token_key(appid), token=token, expires_at=float(expires_at),
                     ttl=datetime.fromtimestamp(int(expires_at) + 86400, timezone.utc))
        if replaces is None:
            condition = model.PK.does_not_exist()
        else:
            condition = (model.token == replaces) & (model.expires_at <= float(expires_at))
        try:
            item.save(condition=condition)
        except PynamoDBException as exc:
            if response_code(exc) == CONDITION_FAILED:
                return False
            raise Transient(f"token store: {response_code(exc) or type(exc.cause).__name__}") from exc
        return True
