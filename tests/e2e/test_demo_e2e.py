"""`make run` tells its story and keeps serving; `make run DEMO=0` only serves."""
import time

import requests

from infra.local.testing import spawn_local_stack


def test_the_demo_story_runs_through_and_the_stack_keeps_serving():
    with spawn_local_stack(demo=True, env={"POWERTOOLS_LOG_LEVEL": "WARNING"}, timeout=120) as running:
        deadline = time.monotonic() + 180
        while "reconcile:" not in running.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        output = running.output()
        assert "Demo story" in output and "never twice" in output, output
        assert "balance = sum of entries = sum of lots - debt: ok" in output, output
        for channel in ("-> whatsapp", "-> sms", "-> wechat"):
            assert channel in output, output                          # reminders on all three channels
        assert "queued -> sent -> delivered" in output, output       # a signed receipt came back
        assert "Chen sends 我的积分 on WeChat -> 您的积分：908" in output, output
        assert "consent opted_out at once" in output, output
        assert "demo story failed" not in output
        assert "no token: GET /members/ana/points -> 401" in output and "adjustments -> 403" in output, output
        assert "Eve joins with Ana as her referrer" in output, output              # a referral (E3)
        assert "-> credited +5" in output and "credited once" in output, output    # an activity (E1)
        assert "-> held:" in output and "approves it -> approved" in output, output  # a review
        assert "tier silver at once" in output, output                             # a tier-up (E7)
        # a week of the challenge (E4, E5): the invitation on both channels, seven days of 签到
        # replies, the calendar's tasks, the Friday summary, Kai's caring nudge, the draw
        assert "is public before the draw" in output and "-> Kai on sms via aliyun (SMS_CHALLENGE_INVITATION)" in output
        assert all(f'Lin sends 签到 on WhatsApp -> "Day {n}/90 ✅ +10' in output for n in range(1, 8)), output
        assert output.count("Kai does not check in") == 3 and "Kai checks in in the app: streak 1, +10" in output
        assert "calendar -> Kai on sms via aliyun (SMS_CHALLENGE_UPDATE): We can see you have been busy" in output
        assert "本周小结" in output and "Your week" in output, output
        assert "make verify-draw) -> OK" in output and "leaderboard: 1. L* 70, 2. K* 40" in output, output
        token = requests.post(running.api_url + "/_local/token", json={}, timeout=10).json()["access_token"]
        assert requests.get(running.api_url + "/members/ana/points", timeout=10,
                            headers={"Authorization": f"Bearer {token}"}).json()["balance"] == 48 + 50 + 200   # + Eve's referral
