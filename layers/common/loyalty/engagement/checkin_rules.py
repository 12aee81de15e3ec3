"""The rules of daily check-ins (E4) as the validated `checkins` section of
`loyalty.rules.Rules`: the points of each streak day."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreakPoints(_Strict):
    """From streak day `from_day` on (until the next step's), a check-in earns `points`."""

    from_day: int = Field(ge=1, le=10_000)
    points: int = Field(ge=0, le=100_000)


class CheckinRules(_Strict):
    """Points by streak day: a list of (from_day, points) steps, the first from day 1, in
    order of strictly increasing day; the last step holds for every later day. Given as
    objects ({"from_day": 8, "points": 15}) or pairs ([8, 15])."""

    streak_points: tuple[StreakPoints, ...] = (StreakPoints(from_day=1, points=10), StreakPoints(from_day=8, points=15),
                                               StreakPoints(from_day=15, points=20),
                                               StreakPoints(from_day=31, points=20))

    @field_validator("streak_points", mode="before")
    @classmethod
    def _pairs(cls, value):
        if isinstance(value, (list, tuple)):
            return [{"from_day": step[0], "points": step[1]} if isinstance(step, (list, tuple)) and len(step) == 2
                    else step for step in value]
        return value

    @model_validator(mode="after")
    def _steps(self) -> "CheckinRules":
        days = [step.from_day for step in self.streak_points]
        if not days or days[0] != 1:
            raise ValueError("checkins.streak_points: the first step is from day 1")
        if any(b <= a for a, b in zip(days, days[1:])):
            raise ValueError("checkins.streak_points: steps in order of strictly increasing from_day")
        return self

    def points_for(self, streak_day: int) -> int:
        """What a check-in on day `streak_day` of a streak (1, 2, ...) earns."""
        return [step.points for step in self.streak_points if step.from_day <= streak_day][-1]
