"""The engagement half of the programme (seeds 002 and 003): earning beyond orders
(activities, milestones, referrals), tiers, risk control. Its per-member state lives on
the member's item with the account (`state.Engagement`), written in the same
transaction as the points it concerns."""
