"""The real-time notices a service tells of beyond the caller's own answer (a referrer's
reward, released pending points): queued as the points-credited notice, one job per
credit, the job id from what credited it."""
import logging

from loyalty.domain import parse_time
from loyalty.messaging import notices

NOW = parse_time("2026-03-02T10:00:00+08:00")


class Queues:
    def __init__(self, fail=False):
        self.sent, self.fail = [], fail

    def send(self, name, body, delay_s=0):
        if self.fail:
            raise ConnectionError("queue down")
        self.sent.append((name, body))


def test_each_credit_told_is_queued_as_the_points_credited_notice_of_its_member():
    told = [{"kind": "tier_up", "event_id": "e1", "member_id": "bo", "tier": "silver", "qualifying_points": 2000},
            {"kind": "points_credited", "event_id": "e1#ana", "member_id": "ana", "points": 200, "balance": 250},
            {"kind": "points_credited", "event_id": "release#o1", "member_id": "bo", "points": 0, "balance": 9}]
    queues = Queues()
    assert notices.credits(queues, told, NOW, logging.getLogger("t")) == 1      # a tier-up is not a credit; 0 points: none
    [(queue, job)] = queues.sent
    assert queue == "jobs" and job["job_id"] == "notice#points_credited#e1#ana" and job["member_id"] == "ana"
    assert (job["kind"], job["template"], job["variables"]) == ("notice", "points_credited",
                                                               {"points": 200, "balance": 250})


def test_a_notice_that_cannot_be_queued_is_logged_never_raised():
    told = [{"kind": "points_credited", "event_id": "e1#ana", "member_id": "ana", "points": 200, "balance": 250}]
    assert notices.credits(Queues(fail=True), told, NOW, logging.getLogger("t")) == 0
