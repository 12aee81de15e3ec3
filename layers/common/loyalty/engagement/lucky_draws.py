"""Lucky-draw catalog items (E10): an item with `lucky_draw` is redeemed through the usual
redemption path, and each redemption is one entry in its draw (the entrant id is the
redemption id, so a member may hold several entries).

The draw's seed is made once, when the item is first shown or entered (a conditional
write: never replaced), and its commitment is shown with the item in the catalog. Its
run (on or after its day `on`, once that day has ended in the programme's time zone)
first closes the draw to entries, then reads them all, then draws with the published
algorithm (loyalty.engagement.draws) and records the result as a challenge's draw is
recorded; a redemption committed after the close is refused (its transaction checks
the draw is open), so the entries read are all the entries there will be. A lucky-draw
redemption is not cancelled (its entry may already be drawn)."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..domain import iso
from ..errors import Conflict, NotFound
from . import draws
from .challenge_results import day_ended, entrants_answer, record_draw
from .outcomes import DrawEntry, lucky_owner

if TYPE_CHECKING:
    from ..ports import ResultsStore
    from ..rules import CatalogItem, Rules


def lucky_item(rules: "Rules", item_id: str) -> "CatalogItem":
    item = next((i for i in rules.catalog if i.item_id == item_id and i.lucky_draw is not None), None)
    if item is None:
        raise NotFound(f"no lucky-draw catalog item {item_id}")
    return item


def seed_of(results: "ResultsStore", draw_id: str) -> str:
    """The draw's seed: the stored one, or a fresh one stored now (on condition that none is)."""
    found = results.lucky_seeds([draw_id]).get(draw_id)
    return found[0] if found else results.lucky_seed(draw_id, draws.new_seed())


def prepare_entry(results: "ResultsStore", rules: "Rules", item_id: str) -> None:
    """Before a redemption of `item_id`: its draw's seed exists (committed before any
    entry). Nothing for an item that is not a lucky draw (no read)."""
    item = rules.item(item_id)
    if item is not None and item.lucky_draw is not None:
        seed_of(results, item.lucky_draw.draw_id)


def entry_for(item: "CatalogItem", member_id: str, redemption_id: str, now: datetime) -> DrawEntry | None:
    """The entry a redemption of `item` makes (None: not a lucky-draw item)."""
    if item.lucky_draw is None:
        return None
    return DrawEntry(draw_id=item.lucky_draw.draw_id, entrant_id=redemption_id, member_id=member_id, at=iso(now))


def with_draws(results: "ResultsStore", rules: "Rules", view: dict) -> dict:
    """A catalog view with each lucky-draw item's draw: {draw_id, on, winners,
    commitment, status: open | closed}; one read for all of them (and a seed made for
    one shown for the first time)."""
    items = {item.item_id: item for item in rules.catalog if item.lucky_draw is not None}
    shown = [i for i in view.get("items", []) if i["item_id"] in items]
    if not shown:
        return view
    found = results.lucky_seeds([items[i["item_id"]].lucky_draw.draw_id for i in shown])
    for entry in shown:
        draw = items[entry["item_id"]].lucky_draw
        seed, closed = found.get(draw.draw_id) or (seed_of(results, draw.draw_id), None)
        entry["lucky_draw"] = {"draw_id": draw.draw_id, "on": draw.on.isoformat(), "winners": draw.winners,
                               "commitment": draws.commitment(seed), "algorithm": draws.ALGORITHM,
                               "status": "closed" if closed else "open"}
    return view


def run_lucky_draw(results: "ResultsStore", rules: "Rules", item_id: str, now: datetime) -> dict:
    """Run the item's draw once: the challenge draws' record ({draw_id, commitment, seed,
    entrants_hash, entrants, winners}, the winners being redemption ids) with the item
    and the winning entries' members. Again, the same. NotFound: not a lucky-draw item;
    Conflict: its day has not ended (programme time zone)."""
    item = lucky_item(rules, item_id)
    draw = item.lucky_draw
    owner = lucky_owner(draw.draw_id)
    result = results.get_draw(owner, draw.draw_id)
    if result is None:
        if not day_ended(draw.on, rules.program_timezone, now):
            raise Conflict(f"lucky draw {draw.draw_id} is on {draw.on.isoformat()}: it runs once that day has "
                           f"ended ({rules.program_timezone})")
        seed = seed_of(results, draw.draw_id)
        results.close_lucky_draw(draw.draw_id, iso(now))   # before reading: a later entry is refused
        members = {e.entrant_id: e.member_id for page in results.draw_entries(draw.draw_id) for e in page}
        result = record_draw(results, owner, draw.draw_id, draw.on, seed, draws.commitment(seed), list(members),
                             draw.winners, now, members)
    return {**result.answer(), "item_id": item_id, "run_at": result.run_at, "algorithm": result.algorithm,
            "winning_entries": [{"redemption_id": r, "member_id": m}
                                for r, m in zip(result.winners, result.winner_members)]}


def lucky_entrants(results: "ResultsStore", rules: "Rules", item_id: str) -> dict:
    """{draw_id, entrant_ids} (redemption ids, sorted) once the item's draw has run."""
    draw = lucky_item(rules, item_id).lucky_draw
    return entrants_answer(results, lucky_owner(draw.draw_id), draw.draw_id)
