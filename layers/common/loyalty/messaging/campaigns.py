"""An operator's one-off campaign: one job per member through the same dispatcher, so
consent, the marketing caps, quiet hours and send windows all apply, and the same
campaign sent again reaches nobody twice (job ids come from the campaign and member)."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import Invalid
from .dispatcher import campaign_jobs

if TYPE_CHECKING:
    from ..rules import Rules


def queue_campaign(queues, rules: "Rules", campaign_id: str, template: str, member_ids: list[str],
                   variables: dict, at: datetime) -> dict:
    """Queue the campaign's jobs; Invalid if the template does not exist."""
    if template not in rules.templates:
        raise Invalid([{"field": "template", "problem": f"no template {template!r}"}])
    queued = queues.send_batch("jobs", campaign_jobs(campaign_id, template, member_ids, variables, at))
    return {"campaign_id": campaign_id, "template": template, "category": rules.template(template).category,
            "queued": queued}
