"""The member's marketing counters: MEMBER#<id> / CAPS, moved in the same transaction as
the outbox record that counts against them, on condition that they are still what the
dispatcher read."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.expressions.condition import Condition

from ...messaging.dispatch import CapCounters
from .base import TableItem
from .outbox import member_pk

CAPS_SK = "CAPS"


class CapsItem(TableItem):
    day = UnicodeAttribute()
    day_count = NumberAttribute()
    month = UnicodeAttribute()
    month_count = NumberAttribute()


def caps_item(model: type[CapsItem], member_id: str, caps: CapCounters) -> CapsItem:
    return model(member_pk(member_id), CAPS_SK, day=caps.day, day_count=caps.day_count, month=caps.month,
                 month_count=caps.month_count)


def unchanged_since(model: type[CapsItem], read: CapCounters) -> Condition:
    """The counters are still those the dispatcher read (none at all, when it read none)."""
    if read == CapCounters():
        return model.PK.does_not_exist()
    return ((model.day == read.day) & (model.day_count == read.day_count) & (model.month == read.month)
            & (model.month_count == read.month_count))


def cap_counters(item) -> CapCounters:
    """The counters of a CAPS item (read as a CapsItem, or in the member's partition)."""
    return CapCounters(day=item.day, day_count=int(item.day_count), month=item.month,
                       month_count=int(item.month_count))


# One challenge message a member-local day: MEMBER#<id> / SENT#CHALLENGE#<date>, put in the
# transaction that queues the message, on condition that it does not exist. "SENT#" sorts
# after PROFILE, so the dispatcher's read of the member (CAPS .. PROFILE) never reads it;
# the table's TTL removes it after DAILY_KEEP.
DAILY_SK = "SENT#CHALLENGE#"
DAILY_KEEP_S = 40 * 86400


class DailyItem(TableItem):
    message_id = UnicodeAttribute()
    ttl = TTLAttribute()


def daily_item(model: type[DailyItem], member_id: str, day: str, message_id: str, at) -> DailyItem:
    from datetime import timedelta
    return model(member_pk(member_id), DAILY_SK + day, message_id=message_id, ttl=at + timedelta(seconds=DAILY_KEEP_S))
