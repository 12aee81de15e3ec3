"""Member profiles and per-channel consent."""
from __future__ import annotations

from datetime import datetime

from ..errors import NotFound
from ..ports import AccountStore, ConsentStore, ProfileStore
from ..records import Consent, Profile
from . import member_rewards
from ._retry import with_retries


def update_profile(profiles: ProfileStore, accounts: AccountStore, profile: Profile, rules=None,
                   now: datetime | None = None, notices: list | None = None) -> dict:
    """Replace the member's profile. A field left out is cleared, as with null (but the
    referrer fixed at join stays). A phone number or WeChat OpenID belongs to one member:
    claiming one that another member holds raises ContactTaken and changes nothing; one
    the new profile no longer has is released, for another member to claim. A concurrent
    change of the same profile makes the store read it again.

    With `rules` (and `now`): the referrer is checked first (member_rewards.settle_referrer),
    and once the profile is stored, what it earns is credited (the profile-completed
    milestone, the referral join bonuses): a retry of a request that failed in between
    credits it then, once. `notices` receives the referrer's points-credited notice."""
    referrer = None
    if rules is not None:
        profile, referrer = member_rewards.settle_referrer(profiles, accounts, profile)
    with_retries(lambda: profiles.put_profile(profile))
    if rules is not None:
        member_rewards.reward_profile(accounts, rules, profile, referrer, now, notices)
    return member_view(profiles, accounts, profile.member_id)


def member_view(profiles: ProfileStore, accounts: AccountStore, member_id: str, rules=None, now=None) -> dict:
    """The profile and balance; with `rules` and `now`, the member's tier (E7) as of `now`."""
    profile = profiles.get_profile(member_id)
    account = accounts.load_account(member_id, with_lots=False)
    if profile is None and account.version == 0:
        raise NotFound(f"no member {member_id}")
    body = {"member_id": member_id, "balance": account.balance}
    if rules is not None and now is not None:
        from ..engagement.tiers import tier_view
        body["tier"] = tier_view(account.engagement, now, rules)
    if profile is not None:
        body.update({"name": profile.name, "phone": profile.phone, "wechat_openid": profile.wechat_openid,
                     "locale": profile.locale, "time_zone": profile.time_zone,
                     "preferred_channels": list(profile.preferred_channels), "birthday": profile.birthday,
                     "referrer": profile.referrer})
    if account.engagement.progress.badges:
        body["badges"] = list(account.engagement.progress.badges)
    return body


def record_consent(store: ConsentStore, consent: Consent, accounts: AccountStore | None = None, rules=None,
                   now: datetime | None = None) -> dict:
    """Add a consent decision to the history; the newest decision (by its time) is in force.
    With `accounts` and `rules`: a member's first opt-in earns its milestone (once)."""
    store.add_consent(consent)
    if rules is not None and consent.status == "opted_in":
        member_rewards.reward_opt_in(accounts, rules, consent.member_id, now)
    return consent_view(store, consent.member_id, consent.channel)


def _decisions(history: list[Consent]) -> dict:
    return {"status": history[0].status if history else "unknown",
            "history": [{"status": c.status, "source": c.source, "at": c.at.isoformat(),
                         **({"proof": c.proof} if c.proof else {})} for c in history]}


def consent_view(store: ConsentStore, member_id: str, channel: str) -> dict:
    """The channel's decisions; for WhatsApp also `marketing`, the member's choice about
    marketing messages only (WhatsApp's own stop / resume, error 131050)."""
    from ..messaging.dispatch import MARKETING_SCOPE
    view = {"member_id": member_id, "channel": channel, **_decisions(store.consent_history(member_id, channel))}
    if channel in MARKETING_SCOPE:
        view["marketing"] = _decisions(store.consent_history(member_id, MARKETING_SCOPE[channel]))
    return view
