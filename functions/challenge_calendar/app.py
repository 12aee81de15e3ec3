"""Daily (EventBridge Scheduler, 00:20 programme time): plan the day's challenge messages
(E5, M12), at most one per participant, each deferred by the dispatcher to the
challenge's send time in the member's own zone. {"on": "YYYY-MM-DD"} re-runs a past day:
the same jobs, which the outbox and the one-a-day key make duplicates."""
from datetime import date
from zoneinfo import ZoneInfo

from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    from loyalty.engagement.challenge_calendar import plan_challenge_day  # pydantic models: on first use
    now = parse_time(event["time"])
    rules = wiring.rules()
    on = date.fromisoformat(event["on"]) if event.get("on") else now.astimezone(ZoneInfo(rules.program_timezone)).date()
    store = wiring.challenge_store()
    plan = plan_challenge_day(store, store, on, now, finish=wiring.challenge_finish(),
                              leaderboard=wiring.challenge_leaderboard(), template=rules.messaging.challenge_template)
    sent = wiring.queues().send_batch("jobs", list(plan.jobs))
    summary = {"on": on.isoformat(), "challenges": plan.challenges, "participants": plan.participants_read,
               "jobs": sent, "counts": plan.counts}
    logger.info("challenge day planned", extra=summary)
    return summary
