"""Check-in figures: one check-in through the members API is one read of the member's
item and one TransactWriteItems, for a member in no challenge and for an enrolled
participant (whose participant items go in the same transaction); a second check-in the
same day writes nothing."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

from bench.ledger import Context, handler, ledger_store
from bench.logs import say


def checkin_event(member: str, at: str) -> dict:
    """POST /members/{member}/checkins as API Gateway hands it over, a member app's token admitted."""
    path = f"/members/{member}/checkins"
    return {"version": "2.0", "routeKey": "POST /members/{member_id}/checkins", "rawPath": path,
            "rawQueryString": "", "headers": {"content-type": "application/json"},
            "pathParameters": {"member_id": member},
            "requestContext": {"requestId": "bench", "stage": "$default", "routeKey": "POST /members/{member_id}/checkins",
                               "http": {"method": "POST", "path": path},
                               "authorizer": {"jwt": {"claims": {"sub": "bench-app", "scope": "loyalty/members.write"},
                                                      "scopes": ["loyalty/members.write"]}}},
            "body": json.dumps({"at": at}), "isBase64Encoded": False}


def _members(aws, prefix: str, n: int, enrolled: bool) -> list[str]:
    """Members with a profile (not counted); `enrolled`: in a challenge running today."""
    from loyalty.adapters.ledger.challenges import participant_item
    from loyalty.engagement.challenges import Participant, shard_of
    from loyalty.engagement.state import CheckinState, Engagement
    from loyalty.records import Change, Profile
    store, members = ledger_store(aws), [f"{prefix}{i}" for i in range(n)]
    today = date.today()
    window = ((today - timedelta(days=30)).isoformat(), (today + timedelta(days=59)).isoformat())
    for member in members:
        store.put_profile(Profile(member, time_zone="Asia/Shanghai"))
        if enrolled:
            store.commit(Change(member_id=member, expected_version=0, engagement=Engagement(checkin=CheckinState(
                challenges=(("bench-q", *window, shard_of(member)),)))))
            participant_item(store.Participant, Participant(
                challenge_id="bench-q", member_id=member, enrolled_at=f"{window[0]}T09:00:00+08:00", source="api",
                shard=shard_of(member))).save()
    return members


def checkins(aws, counter, row, n: int = 30, meter=None) -> None:
    members_api = handler("members_api")
    at = datetime.now(timezone.utc).isoformat()
    warm = _members(aws, "bench-ci-warm", 1, False)[0]
    assert members_api(checkin_event(warm, at), Context())["statusCode"] == 200
    for label, enrolled in (("one check-in", False), ("one check-in of an enrolled participant", True)):
        members = _members(aws, "bench-cip-m" if enrolled else "bench-ci-m", n, enrolled)
        counter.reset()
        if meter and not enrolled:
            meter.reset()
        for member in members:
            answer = members_api(checkin_event(member, at), Context())
            assert answer["statusCode"] == 200 and json.loads(answer["body"])["points"] > 0, answer
        if meter and not enrolled:   # the reference month counts check-ins with activities
            units = meter.reset().per(n)
            say(f"  one check-in: {units.wru:.1f} write units, {units.rru:.1f} read units")
        writes, reads, scans = counter.writes / n, counter.reads / n, counter.calls["Scan"]
        row(f"{label}: DynamoDB write calls", f"{writes:.2f}", "1", writes == 1)
        row(f"{label}: DynamoDB read calls", f"{reads:.2f}", "≤ 1", reads <= 1)
        row(f"{label}: Scans", str(scans), "0", scans == 0)
    counter.reset()
    for member in members:
        answer = members_api(checkin_event(member, at), Context())
        assert json.loads(answer["body"])["already_checked_in"] is True, answer
    row("second check-in the same day: write calls", str(counter.writes), "0", counter.writes == 0)
