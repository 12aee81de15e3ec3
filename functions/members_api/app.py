"""The members API: profiles, consents, points, ledger, redemptions, adjustments, catalog."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.errors import Invalid
from loyalty.records import Consent, Profile
from loyalty.services import adjustments, disputes, members, queries, redemptions
from loyalty.web.edge import check_size, raw_body
from loyalty.web.plain import CHANNELS, canonical_hash, check_member_id, parse_json
from loyalty.web.responses import json_response as _reply
from loyalty.web.router import Router, query
from loyalty.web.views import redemption_view

logger = Logger()
app = Router()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _body(event, model: str):
    """The body parsed into the request model named `model` (pydantic loads on first use)."""
    from loyalty.web import models
    raw = raw_body(event)
    check_size(raw)
    document = parse_json(raw)
    return models.validate(getattr(models, model), document), document


@app.route("PUT", "/members/{member_id}")
def put_member(event, member_id: str):
    body, _ = _body(event, "ProfileBody")
    profile = Profile(member_id=check_member_id(member_id), **{**body.model_dump(), "preferred_channels": tuple(body.preferred_channels)})
    return _reply(200, members.update_profile(wiring.ledger_store(), profile))


@app.route("GET", "/members/{member_id}")
def get_member(event, member_id: str):
    return _reply(200, members.member_view(wiring.ledger_store(), check_member_id(member_id)))


def notify_redemption(view: dict, rules) -> None:
    """Queue the redemption-confirmed notice (a lost notice never undoes the redemption)."""
    from loyalty.messaging.dispatcher import notice_job
    item = rules.item(view["item_id"])
    job = notice_job(view["redemption_id"], view["member_id"], "redemption_confirmed",
                     {"item": item.name if item else view["item_id"], "code": view["code"],
                      "balance": view["balance"]}, _now())
    try:
        wiring.queues().send("jobs", job)
    except Exception as exc:  # noqa: BLE001
        logger.error("redemption notice not queued", extra={"redemption_id": view["redemption_id"], "error": str(exc)})


def _channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise Invalid([{"field": "channel", "problem": f"one of {', '.join(CHANNELS)}"}])
    return channel


@app.route("PUT", "/members/{member_id}/consents/{channel}")
def put_consent(event, member_id: str, channel: str):
    body, _ = _body(event, "ConsentBody")
    consent = Consent(member_id=check_member_id(member_id), channel=_channel(channel), status=body.status,
                      source=body.source, at=parse_time(body.at), proof=body.proof)
    return _reply(200, members.record_consent(wiring.ledger_store(), consent))


@app.route("GET", "/members/{member_id}/consents/{channel}")
def get_consent(event, member_id: str, channel: str):
    return _reply(200, members.consent_view(wiring.ledger_store(), check_member_id(member_id), _channel(channel)))


@app.route("GET", "/members/{member_id}/points")
def get_points(event, member_id: str):
    store = wiring.ledger_store()
    profile = store.get_profile(check_member_id(member_id))
    zone = (profile and profile.time_zone) or wiring.rules().program_timezone
    return _reply(200, queries.points_view(store, member_id, _now(), zone))


@app.route("GET", "/members/{member_id}/ledger")
def get_ledger(event, member_id: str):
    limit = query(event, "limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 200:
        raise Invalid([{"field": "limit", "problem": "an integer from 1 to 200"}])
    cursor = query(event, "cursor") or None
    return _reply(200, queries.ledger_page(wiring.ledger_store(), check_member_id(member_id), cursor, int(limit)))


@app.route("POST", "/members/{member_id}/redemptions")
def post_redemption(event, member_id: str):
    body, _ = _body(event, "RedemptionBody")
    redemption, created = redemptions.redeem(wiring.ledger_store(), wiring.rules(), check_member_id(member_id),
                                             body.item_id, body.idempotency_key, _now())
    view = redemption_view(redemption, wiring.ledger_store())
    if created:
        notify_redemption(view, wiring.rules())
    return _reply(201 if created else 200, view)


@app.route("GET", "/members/{member_id}/redemptions")
def get_redemptions(event, member_id: str):
    store = wiring.ledger_store()
    found = store.list_redemptions(check_member_id(member_id))
    return _reply(200, {"member_id": member_id, "redemptions": [redemption_view(r) for r in found]})


@app.route("POST", "/members/{member_id}/redemptions/{redemption_id}/cancel")
def cancel_redemption(event, member_id: str, redemption_id: str):
    raw = raw_body(event)
    check_size(raw)
    from loyalty.web import models
    reason = models.validate(models.CancelBody, parse_json(raw)).reason if raw.strip() else "cancelled"
    redemption = redemptions.cancel_redemption(wiring.ledger_store(), wiring.rules(), check_member_id(member_id),
                                               redemption_id, reason, _now())
    return _reply(200, redemption_view(redemption, wiring.ledger_store()))


@app.route("POST", "/members/{member_id}/redemptions/{redemption_id}/fulfil")
def fulfil_redemption(event, member_id: str, redemption_id: str):
    redemption = redemptions.fulfil_redemption(wiring.ledger_store(), check_member_id(member_id), redemption_id, _now())
    return _reply(200, redemption_view(redemption, wiring.ledger_store()))


@app.route("POST", "/members/{member_id}/adjustments")
def post_adjustment(event, member_id: str):
    body, document = _body(event, "AdjustmentBody")
    result, created = adjustments.adjust_points(
        wiring.ledger_store(), wiring.rules(), check_member_id(member_id), body.points, body.reason, body.operator_id,
        body.idempotency_key, canonical_hash(document), _now(),
        expires_at=parse_time(body.expires_at) if body.expires_at else None)
    return _reply(201 if created else 200, result)


@app.route("POST", "/members/{member_id}/disputes")
def post_dispute(event, member_id: str):
    body, _ = _body(event, "DisputeBody")
    dispute, created = disputes.open_dispute(wiring.ledger_store(), check_member_id(member_id), body.entry_id,
                                             body.reason, body.idempotency_key, _now())
    return _reply(201 if created else 200, disputes.dispute_view(dispute))


@app.route("GET", "/members/{member_id}/disputes")
def get_disputes(event, member_id: str):
    found = wiring.ledger_store().list_disputes(check_member_id(member_id))
    return _reply(200, {"member_id": member_id, "disputes": [disputes.dispute_view(d) for d in found]})


@app.route("POST", "/members/{member_id}/disputes/{dispute_id}/resolve")
def resolve_dispute(event, member_id: str, dispute_id: str):
    body, _ = _body(event, "ResolutionBody")
    dispute = disputes.resolve_dispute(wiring.ledger_store(), wiring.rules(), check_member_id(member_id), dispute_id,
                                       body.outcome, body.points, body.operator_id, body.note, _now())
    return _reply(200, disputes.dispute_view(dispute))


@app.route("GET", "/disputes")
def review_queue(event):
    limit = query(event, "limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 200:
        raise Invalid([{"field": "limit", "problem": "an integer from 1 to 200"}])
    found = wiring.ledger_store().open_disputes(int(limit))
    return _reply(200, {"disputes": [disputes.dispute_view(d) for d in found]})


@app.route("GET", "/members/{member_id}/messages")
def get_messages(event, member_id: str):
    from loyalty.messaging.outbox import message_view
    limit = query(event, "limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 200:
        raise Invalid([{"field": "limit", "problem": "an integer from 1 to 200"}])
    found = wiring.messaging_store().member_messages(check_member_id(member_id), int(limit))
    return _reply(200, {"member_id": member_id, "messages": [message_view(r) for r in found]})


@app.route("POST", "/campaigns")
def post_campaign(event):
    """An operator's one-off campaign: one job per member; consent, caps and windows apply."""
    from loyalty.messaging.dispatcher import campaign_jobs
    body, _ = _body(event, "CampaignBody")
    rules = wiring.rules()
    if body.template not in rules.templates:
        raise Invalid([{"field": "template", "problem": f"no template {body.template!r}"}])
    at = parse_time(body.at) if body.at else _now()
    jobs = campaign_jobs(body.campaign_id, body.template, body.member_ids, body.variables, at)
    queued = wiring.queues().send_batch("jobs", jobs)
    return _reply(202, {"campaign_id": body.campaign_id, "template": body.template,
                        "category": rules.template(body.template).category, "queued": queued})


@app.route("GET", "/catalog")
def get_catalog(event):
    rules = wiring.rules()
    return _reply(200, {"items": [item.model_dump() for item in rules.catalog if item.active],
                        "points_per_currency_unit": rules.redemption.points_per_currency_unit})


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    return app.resolve(event)
