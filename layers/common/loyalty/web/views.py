"""JSON shapes of domain records in API answers."""
from __future__ import annotations

from ..records import Redemption


def redemption_view(redemption: Redemption, store=None) -> dict:
    body = {"redemption_id": redemption.redemption_id, "member_id": redemption.member_id,
            "item_id": redemption.item_id, "points": redemption.points, "status": redemption.status,
            "code": redemption.code, "created_at": redemption.created_at.isoformat(),
            "lots": [{"lot_id": lot_id, "points": n} for lot_id, n in redemption.allocation],
            "history": [{"status": s, "at": at} for s, at in redemption.history]}
    if store is not None:
        body["balance"] = store.load_account(redemption.member_id, with_lots=False).balance
    return body
