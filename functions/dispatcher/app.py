"""SQS (reminder jobs): consent, caps, windows, render, outbox, then the channel's queue."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import process_partial_response

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.messaging.dispatcher import dispatch_job
from loyalty.web.sqs import SqsBatch

logger = Logger()


def _now(job: dict) -> datetime:
    # The job's own time when it is later than the clock: a job released for 12:00 is
    # decided at 12:00 even if the release ran a moment early (or on a simulated clock).
    stamps = [job.get("not_before"), job.get("planned_at")]
    wall = datetime.now(timezone.utc)
    return max([wall] + [parse_time(s) for s in stamps if s])


def _dispatch(record) -> None:
    job = record.json_body
    participants = wiring.challenge_store() if job.get("kind") == "challenge" else None
    outcome = dispatch_job(job, wiring.messaging_store(), wiring.queues(), wiring.rules(), _now(job), participants)
    logger.info("job dispatched", extra={"job_id": job.get("job_id"), "outcome": outcome})


@logger.inject_lambda_context
def handler(event, context):
    return process_partial_response(event, _dispatch, SqsBatch(logger), context)
