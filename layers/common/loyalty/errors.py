"""Error types. Adapters translate provider/database errors into these once; one
exception handler per API maps each type to an HTTP status."""


class LoyaltyError(Exception):
    """Base class: every error the services raise on purpose."""


class Invalid(LoyaltyError):
    """The request is malformed; `problems` lists what is wrong (-> 400)."""

    def __init__(self, problems: list[dict] | str):
        if isinstance(problems, str):
            problems = [{"field": "", "problem": problems}]
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['problem']}" if p["field"] else p["problem"] for p in problems))


class Unauthorized(LoyaltyError):
    """Signature missing, wrong or too old (-> 401)."""


class TooLarge(LoyaltyError):
    """The request body is above the size limit (-> 413)."""


class NotFound(LoyaltyError):
    """The thing asked for does not exist (-> 404)."""


class Conflict(LoyaltyError):
    """The request contradicts what is recorded: same idempotency key with another body,
    a refund above the paid amount, not enough points (-> 409)."""


class ContactTaken(Conflict):
    """A phone number or WeChat OpenID the request claims is held by another member
    (-> 409). `problems` names the fields, in the shape of Invalid's; the other member is
    never named."""

    def __init__(self, fields: list[str]):
        self.problems = [{"field": field, "problem": "held by another member"} for field in fields]
        super().__init__(f"{' and '.join(fields)} {'is' if len(fields) == 1 else 'are'} held by another member")


class ConcurrentUpdate(LoyaltyError):
    """An optimistic-concurrency check failed; the caller re-reads and retries."""


class AlreadyApplied(LoyaltyError):
    """The write was already made (an idempotency record exists)."""


class Misconfigured(LoyaltyError):
    """The deployment's configuration is wrong (rules, secrets): fix it, then retries
    succeed (-> 503, so callers keep retrying and nothing is lost)."""


class Transient(LoyaltyError):
    """A downstream fault worth retrying (throttling, timeouts, 5xx) (-> 503)."""


class ConfigUnreadable(Transient):
    """A secret or parameter could not be read for a reason of the deployment's (access
    denied, no such secret, not a JSON object): logged as a configuration error and not
    retried on the spot, but never taken for "not configured" either. Callers answer 503
    and retry, as for any Transient, so fixing the deployment is all it takes."""


class ParticipantGone(Conflict):
    """A change credits a challenge participant that is not there any more (the member
    left the challenge, or their data was erased): `challenge_ids` names them. The stores'
    commit drops those credits (Change.without_credits) and commits the rest once more;
    never a duplicate, never retried as it is."""

    def __init__(self, challenge_ids: list[str]):
        self.challenge_ids = list(challenge_ids)
        super().__init__(f"not a participant of {', '.join(self.challenge_ids)} any more")
