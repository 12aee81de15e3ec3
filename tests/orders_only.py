"""Rule overrides that turn off what engagement adds to orders, consents and profiles
(milestones, upgrade gifts, the member day), for the tests of behaviour that predates it: the ledger's own,
the reminders', the messaging's. Their figures are an order's points alone; the rules
added on orders are proven with the defaults by tests/engagement_contract.py and
tests/e2e/test_engagement_e2e.py."""
import json

ORDERS_ONLY = {"milestones": {"orders": [], "gift": {"every_orders": None}, "first_opt_in": 0, "profile_completed": 0},
               "member_day": {"day_of_month": None}}
ORDERS_ONLY_JSON = json.dumps(ORDERS_ONLY)
