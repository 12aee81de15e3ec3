"""A paid order or a redemption of an enrolled member, during a challenge they are
enrolled in, counts in that challenge's stats (repurchase conversion, redemption rate):
a ParticipantCredit of 0 points in the Change that records it. The member's enrolments
are in their engagement state (CheckinState.challenges), so this needs no read."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from .challenges import ParticipantCredit
from .state import Engagement


def during_challenges(engagement: Engagement, member_id: str, at: datetime, time_zone: str, *,
                      orders: int = 0, redemptions: int = 0) -> tuple[ParticipantCredit, ...]:
    """One credit per challenge whose days include `at`'s date in `time_zone` (the
    programme's: the order and redemption paths do not read the member's profile)."""
    local = at.astimezone(ZoneInfo(time_zone)).date().isoformat()
    return tuple(ParticipantCredit(challenge_id=challenge_id, member_id=member_id, shard=int(shard), points=0,
                                   month=local[:7], orders=orders, redemptions=redemptions)
                 for challenge_id, starts_on, ends_on, shard in engagement.checkin.challenges
                 if starts_on <= local <= ends_on)
