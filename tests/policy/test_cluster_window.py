"""The Ray controller's split of the job's flex window and its shared shed streak
(flextier/ray/controller.py, jobs/lanes.FlexLane; README "Scaling out with Ray").

The controller is a plain class (Ray only makes it an actor), so these run in-process."""
from __future__ import annotations

import math

from flextier.jobs.lanes import FlexLane
from flextier.ray.controller import JobController, apportion


def _controller(concurrency: int = 32, std: int = 48) -> JobController:
    return JobController(job="j", model="openai/gpt-5.4-mini", total=2000, done0=0, deadline=None, tier="auto",
                         concurrency=concurrency, std_concurrency=std, max_cost=None, spent0="0",
                         possibly_billed0="0", clock_spec={"kind": "wall"})


def test_apportion_adds_up_to_the_total_and_follows_the_weights() -> None:
    assert apportion(7, [500, 500, 500, 500]) == [2, 2, 2, 1]
    assert sum(apportion(15, [1, 2, 3, 4])) == 15
    assert apportion(15, [1, 2, 3, 4]) == [2, 3, 4, 6]
    assert apportion(48, [3, 1]) == [36, 12]
    assert apportion(5, []) == []


def test_four_members_hold_the_whole_window_not_four_floored_shares() -> None:
    c = _controller()
    for i in range(4):
        c.join(f"m{i}", 500)
    for _ in range(3):  # slow start: the window grows from 4 to 7
        c.window.on_success(0.0)
    c._rebalance()
    assert c.window.limit == 7
    shares = [c.members[f"m{i}"].share for i in range(4)]
    assert sum(shares) == 7, shares          # each floored: 1 + 1 + 1 + 1 = 4
    assert sum(c.members[f"m{i}"].std_share for i in range(4)) == 48


def test_a_success_anywhere_in_the_job_ends_every_lanes_shed_streak() -> None:
    c = _controller()
    c.join("a", 500)
    c.join("b", 500)

    class Pause:  # the FlexPause protocol of a member (flextier/ray/member.py), fed from the controller's reply
        until = -math.inf
        ok_at = -math.inf

        def backed_off(self, until: float) -> None:
            self.until = max(self.until, until)

    pa = Pause()
    lane = FlexLane(32, 3.0, pause=pa)
    for t in (10.0, 11.0, 12.0):
        lane.back_off(t, 1.0)
    assert lane.fail_streak == 3
    # member b's flex success at t=20 reaches the controller, and member a hears of it in a reply
    c.sync("b", {"done": 1, "remaining": 499, "successes": 1, "ok_at": 20.0})
    pa.ok_at = c.sync("a", {"done": 0, "remaining": 500})["flex_ok_at"]
    assert pa.ok_at == 20.0
    assert lane.fail_streak == 0
    lane.back_off(30.0, 1.0)   # a shed after that success starts a new streak
    assert lane.fail_streak == 1


def test_a_lone_lane_keeps_its_own_streak() -> None:
    lane = FlexLane(32, 3.0)
    lane.back_off(1.0, 1.0)
    lane.back_off(2.0, 1.0)
    assert lane.fail_streak == 2
    lane.answered(3.0, 1.0)
    assert lane.fail_streak == 0
