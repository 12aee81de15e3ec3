"""The members API: profiles, consents, points, ledger, redemptions, disputes, operators' actions.

Scopes are checked by API Gateway (template.yaml); operator actions record the token's subject."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.errors import Invalid
from loyalty.messaging import campaigns, notices
from loyalty.records import Consent, Profile
from loyalty.services import adjustments, catalog, disputes, members, queries, redemptions
from loyalty.settings import settings
from loyalty.web.api import caller, http_app, json_body, limit_param, raw_body, reply, request_time
from loyalty.web.plain import CHANNELS, canonical_hash, check_member_id
from loyalty.web.views import redemption_view

logger = Logger()
app = http_app()
# Rewards paid by one POST /challenges/{id}/finish (one write each, well inside the timeout).
FINISH_CREDITS_PER_CALL = 300


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _clock() -> datetime:
    """The request's time (API Gateway's, to the millisecond; on the local stack its
    simulated clock): what the challenge's routes measure days, draws and the end by."""
    return request_time(app.current_event.raw_event, _now())


def _body(model: str):
    """The body parsed into the request model named `model` (pydantic loads on first use)."""
    from loyalty.web import models
    document = json_body(app, settings().max_body_bytes)
    return models.validate(getattr(models, model), document), document


def _channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise Invalid([{"field": "channel", "problem": f"one of {', '.join(CHANNELS)}"}])
    return channel


@app.put("/members/<member_id>")
def put_member(member_id: str):
    body, _ = _body("ProfileBody")
    profile = Profile(member_id=check_member_id(member_id),
                      **{**body.model_dump(), "preferred_channels": tuple(body.preferred_channels)})
    now, told = _now(), []
    view = members.update_profile(wiring.profile_store(), wiring.account_store(), profile, wiring.rules(), now, told)
    notices.credits(wiring.queues(), told, now, logger)   # the referrer's join share
    return reply(200, view)


@app.get("/members/<member_id>")
def get_member(member_id: str):
    return reply(200, members.member_view(wiring.profile_store(), wiring.account_store(), check_member_id(member_id),
                                          wiring.rules(), _now()))


@app.put("/members/<member_id>/consents/<channel>")
def put_consent(member_id: str, channel: str):
    body, _ = _body("ConsentBody")
    consent = Consent(member_id=check_member_id(member_id), channel=_channel(channel), status=body.status,
                      source=body.source, at=parse_time(body.at), proof=body.proof)
    return reply(200, members.record_consent(wiring.consent_store(), consent, wiring.account_store(), wiring.rules(),
                                             _now()))


@app.get("/members/<member_id>/consents/<channel>")
def get_consent(member_id: str, channel: str):
    return reply(200, members.consent_view(wiring.consent_store(), check_member_id(member_id), _channel(channel)))


@app.get("/members/<member_id>/points")
def get_points(member_id: str):
    return reply(200, queries.member_points(wiring.profile_store(), wiring.account_store(), wiring.rules(),
                                            check_member_id(member_id), _now()))


@app.get("/members/<member_id>/ledger")
def get_ledger(member_id: str):
    cursor = app.current_event.get_query_string_value("cursor") or None
    return reply(200, queries.ledger_page(wiring.account_store(), check_member_id(member_id), cursor, limit_param(app)))


@app.post("/members/<member_id>/redemptions")
def post_redemption(member_id: str):
    body, _ = _body("RedemptionBody")
    store, rules = wiring.account_store(), wiring.rules()
    from loyalty.engagement.lucky_draws import prepare_entry
    prepare_entry(wiring.results_store(), rules, body.item_id)   # E10: a lucky draw's seed before its first entry
    redemption, created = redemptions.redeem(store, rules, check_member_id(member_id), body.item_id,
                                             body.idempotency_key, _now())
    view = redemption_view(redemption, store)
    if created or redemption.status != "cancelled":
        # A replay queues it too: the first call's commit may have been applied with its answer
        # lost (the SDK's retry then finds it done); the dispatcher sends a job id once.
        item = rules.item(view["item_id"])
        notices.redemption_confirmed(wiring.queues(), view, item.name if item else None, _now(), logger)
    return reply(201 if created else 200, view)


@app.get("/members/<member_id>/redemptions")
def get_redemptions(member_id: str):
    found = wiring.account_store().list_redemptions(check_member_id(member_id))
    return reply(200, {"member_id": member_id, "redemptions": [redemption_view(r) for r in found]})


@app.post("/members/<member_id>/redemptions/<redemption_id>/cancel")
def cancel_redemption(member_id: str, redemption_id: str):
    reason = _body("CancelBody")[0].reason if raw_body(app).strip() else "cancelled"
    redemption = redemptions.cancel_redemption(wiring.account_store(), wiring.rules(), check_member_id(member_id),
                                               redemption_id, reason, _now())
    return reply(200, redemption_view(redemption, wiring.account_store()))


@app.post("/members/<member_id>/redemptions/<redemption_id>/fulfil")
def fulfil_redemption(member_id: str, redemption_id: str):
    redemption = redemptions.fulfil_redemption(wiring.account_store(), check_member_id(member_id), redemption_id,
                                               _now())
    return reply(200, redemption_view(redemption, wiring.account_store()))


@app.post("/members/<member_id>/adjustments")
def post_adjustment(member_id: str):
    body, document = _body("AdjustmentBody")
    result, created = adjustments.adjust_points(
        wiring.account_store(), wiring.rules(), check_member_id(member_id), body.points, body.reason,
        caller(app).subject, body.idempotency_key, canonical_hash(document), _now(),
        expires_at=parse_time(body.expires_at) if body.expires_at else None)
    return reply(201 if created else 200, result)


@app.post("/members/<member_id>/disputes")
def post_dispute(member_id: str):
    body, _ = _body("DisputeBody")
    dispute, created = disputes.open_dispute(wiring.dispute_store(), wiring.account_store(), check_member_id(member_id),
                                             body.entry_id, body.reason, body.idempotency_key, _now())
    return reply(201 if created else 200, disputes.dispute_view(dispute))


@app.get("/members/<member_id>/disputes")
def get_disputes(member_id: str):
    found = wiring.dispute_store().list_disputes(check_member_id(member_id))
    return reply(200, {"member_id": member_id, "disputes": [disputes.dispute_view(d) for d in found]})


@app.post("/members/<member_id>/disputes/<dispute_id>/resolve")
def resolve_dispute(member_id: str, dispute_id: str):
    body, _ = _body("ResolutionBody")
    dispute = disputes.resolve_dispute(wiring.dispute_store(), wiring.account_store(), wiring.rules(),
                                       check_member_id(member_id), dispute_id, body.outcome, body.points,
                                       caller(app).subject, body.note, _now())
    return reply(200, disputes.dispute_view(dispute))


@app.get("/disputes")
def review_queue():
    found = wiring.dispute_store().open_disputes(limit_param(app))
    return reply(200, {"disputes": [disputes.dispute_view(d) for d in found]})


@app.post("/members/<member_id>/activities")
def post_activity(member_id: str):
    from loyalty.engagement.activities import Activity, record_activity
    body, document = _body("ActivityBody")
    activity = Activity(activity_id=body.activity_id, type=body.type, occurred_at=parse_time(body.occurred_at),
                        ip=body.ip, device_id=body.device_id, body_hash=canonical_hash(document))
    member_id, now = check_member_id(member_id), _now()
    told: list[dict] = []
    result = record_activity(wiring.review_store(), wiring.rules(), member_id, activity, now, told)
    notices.points_credited(wiring.queues(), {"event_id": f"activity#{member_id}#{activity.activity_id}",
                                              "member_id": member_id, **result}, now, logger)
    notices.tier_changes(wiring.queues(), told, wiring.rules(), now, logger)
    return reply(200, result)


@app.post("/members/<member_id>/checkins")
def post_checkin(member_id: str):
    from loyalty.engagement.daily_checkins import record_checkin
    body, _ = _body("CheckinBody")
    member_id, now = check_member_id(member_id), request_time(app.current_event.raw_event, _now())
    told: list[dict] = []
    result = record_checkin(wiring.review_store(), wiring.rules(), member_id, parse_time(body.at), now, told)
    notices.tier_changes(wiring.queues(), told, wiring.rules(), now, logger)
    return reply(200, result)


@app.get("/reviews")
def get_reviews():
    from loyalty.engagement.reviews import reviews_page
    query = app.current_event.get_query_string_value
    return reply(200, reviews_page(wiring.review_store(), query("status", "open") or "open", query("cursor") or None,
                                   limit_param(app)))


@app.post("/reviews/<review_id>")
def post_review_decision(review_id: str):
    from loyalty.engagement.reviews import decide_review, review_view
    body, _ = _body("ReviewDecisionBody")
    now = _now()
    told: list[dict] = []
    review, balance = decide_review(wiring.review_store(), wiring.rules(), review_id, body.decision, body.note,
                                    caller(app).subject, now, told)
    if balance is not None and review.status == "approved":
        notices.points_credited(wiring.queues(), {"event_id": f"review#{review.review_id}",
                                                  "member_id": review.member_id, "points": review.points,
                                                  "balance": balance}, now, logger)
        notices.tier_changes(wiring.queues(), told, wiring.rules(), now, logger)
    return reply(200, review_view(review))


@app.get("/members/<member_id>/messages")
def get_messages(member_id: str):
    from loyalty.messaging.outbox import message_view
    found = wiring.messaging_store().member_messages(check_member_id(member_id), limit_param(app))
    return reply(200, {"member_id": member_id, "messages": [message_view(r) for r in found]})


@app.post("/campaigns")
def post_campaign():
    body, _ = _body("CampaignBody")
    at = parse_time(body.at) if body.at else _now()
    return reply(202, campaigns.queue_campaign(wiring.queues(), wiring.rules(), body.campaign_id, body.template,
                                               body.member_ids, body.variables, at))


@app.get("/catalog")
def get_catalog():
    from loyalty.engagement.lucky_draws import with_draws   # E10: each lucky draw's commitment
    member_id = app.current_event.get_query_string_value("member_id")
    if member_id is None:
        return reply(200, with_draws(wiring.results_store(), wiring.rules(), catalog.catalog_view(wiring.rules())))
    return reply(200, with_draws(wiring.results_store(), wiring.rules(), catalog.member_catalog(
        wiring.account_store(), wiring.rules(), check_member_id(member_id), _now())))


@app.post("/catalog/<item_id>/draw")
def run_lucky_draw(item_id: str):
    from loyalty.engagement.lucky_draws import run_lucky_draw
    return reply(200, run_lucky_draw(wiring.results_store(), wiring.rules(), item_id, _now()))


@app.get("/catalog/<item_id>/draw/entrants")
def get_lucky_draw_entrants(item_id: str):
    from loyalty.engagement.lucky_draws import lucky_entrants
    return reply(200, lucky_entrants(wiring.results_store(), wiring.rules(), item_id))


# --- a check-in challenge's results (E5): draws, final ranking and rewards, stats -------

@app.post("/challenges/<challenge_id>/draws/<draw_id>/run")
def run_challenge_draw(challenge_id: str, draw_id: str):
    from loyalty.engagement.challenge_results import run_challenge_draw
    return reply(200, run_challenge_draw(wiring.challenge_reader(), wiring.results_store(), wiring.rules(),
                                         challenge_id, draw_id, _clock()))


@app.get("/challenges/<challenge_id>/draws/<draw_id>/entrants")
def get_challenge_draw_entrants(challenge_id: str, draw_id: str):
    from loyalty.engagement.challenge_results import draw_entrants
    return reply(200, draw_entrants(wiring.challenge_reader(), wiring.results_store(), challenge_id, draw_id))


@app.post("/challenges/<challenge_id>/finish")
def finish_challenge(challenge_id: str):
    from loyalty.engagement.challenge_results import finish_challenge
    # a bounded share per request (well inside the function's timeout); the answer says
    # "in_progress" until every reward is paid, and the next call continues
    return reply(200, finish_challenge(wiring.challenge_reader(), wiring.results_store(), wiring.account_store(),
                                       wiring.rules(), challenge_id, _clock(), max_credits=FINISH_CREDITS_PER_CALL))


@app.get("/challenges/<challenge_id>/results")
def get_challenge_results(challenge_id: str):
    from loyalty.engagement.challenge_results import results_view
    member_id = app.current_event.get_query_string_value("member_id")
    return reply(200, results_view(wiring.challenge_reader(), wiring.results_store(), wiring.account_store(),
                                   challenge_id, check_member_id(member_id) if member_id is not None else None))


@app.get("/challenges/<challenge_id>/stats")
def get_challenge_stats(challenge_id: str):
    from loyalty.engagement.challenge_results import challenge_stats
    return reply(200, challenge_stats(wiring.challenge_reader(), wiring.rules(), challenge_id, _clock()))


# --- the check-in challenge (E5) --------------------------------------------------------------

def _challenge_id(challenge_id: str) -> str:
    import re

    from loyalty.engagement.challenges import ID_PATTERN
    if not re.match(ID_PATTERN, challenge_id or ""):
        raise Invalid([{"field": "challenge_id", "problem": "1-64 characters of A-Z a-z 0-9 _ . -"}])
    return challenge_id


@app.put("/challenges/<challenge_id>")
def put_challenge(challenge_id: str):
    from loyalty.engagement import challenge_setup
    from loyalty.engagement.challenges import ChallengeSpec
    from loyalty.web import models
    challenge_id = _challenge_id(challenge_id)
    spec = models.validate(ChallengeSpec, json_body(app, settings().max_body_bytes))
    view, created = challenge_setup.put_challenge(wiring.challenge_store(), challenge_id, spec, _clock(),
                                                  wiring.rules().program_timezone)
    return reply(201 if created else 200, view)


@app.get("/challenges/<challenge_id>")
def get_challenge(challenge_id: str):
    from loyalty.engagement import challenge_setup
    record = challenge_setup.get_challenge(wiring.challenge_store(), _challenge_id(challenge_id))
    return reply(200, challenge_setup.challenge_view(record, _clock(), wiring.rules().program_timezone,
                                                     wiring.results_store()))


@app.post("/challenges/<challenge_id>/invitations")
def post_invitations(challenge_id: str):
    from loyalty.engagement import challenge_setup
    body, _ = _body("InvitationsBody")
    return reply(200, challenge_setup.invite(wiring.challenge_store(), wiring.queues(), _challenge_id(challenge_id),
                                             body.member_ids, caller(app).subject, _clock(),
                                             wiring.rules().program_timezone))


@app.post("/challenges/<challenge_id>/enrolments")
def post_enrolment(challenge_id: str):
    from loyalty.engagement import enrolment
    body, _ = _body("EnrolmentBody")
    return reply(200, enrolment.enrol(wiring.challenge_store(), _challenge_id(challenge_id), body.member_id,
                                      parse_time(body.agreed_at), body.source, body.proof, _clock(),
                                      wiring.rules().program_timezone))


@app.delete("/challenges/<challenge_id>/enrolments/<member_id>")
def delete_enrolment(challenge_id: str, member_id: str):
    from loyalty.engagement import enrolment
    return reply(200, enrolment.leave(wiring.challenge_store(), _challenge_id(challenge_id),
                                      check_member_id(member_id), "api", _clock()))


@app.get("/challenges/<challenge_id>/leaderboard")
def get_leaderboard(challenge_id: str):
    from loyalty.engagement import standings
    query = app.current_event.get_query_string_value
    period, limit = standings.check_period(query("period")), standings.check_limit(query("limit"))
    return reply(200, standings.leaderboard(wiring.challenge_store(), _challenge_id(challenge_id), period, limit))


@app.get("/challenges/<challenge_id>/participants/<member_id>")
def get_participant(challenge_id: str, member_id: str):
    from loyalty.engagement import standings
    return reply(200, standings.participant_view(wiring.challenge_store(), _challenge_id(challenge_id),
                                                 check_member_id(member_id)))


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    return app.resolve(event, context)
