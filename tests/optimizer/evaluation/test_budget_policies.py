"""How the budget experiment's policies plan: when, with which events, and how late their
limits reach the GPUs, as the service and its appliers do."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from wattwise.collector.sim.dvfs import Floats
from wattwise.optimizer.evaluation.budget_policies import APPLIER_POLL_S, BudgetPolicy
from wattwise.optimizer.evaluation.budget_watch import event_edges, scopes_at
from wattwise.optimizer.evaluation.caps import _limits
from wattwise.optimizer.evaluation.replica import Replica, run_for, run_policy, warm_replica
from wattwise.optimizer.evaluation.scenario import Scenario
from wattwise.optimizer.recommend.budget_types import BudgetScope

LEAD_S = 90.0


def site_limit(scenario: Scenario, elapsed_s: float, lead_s: float = 0.0) -> float:
    (site,) = [s for s in scopes_at(scenario, elapsed_s, lead_s) if s.scope == "site"]
    return site.limit_w


def test_an_event_counts_in_the_plan_from_its_lead_and_in_the_watch_from_its_start(
    small: Scenario,
) -> None:
    # small-budget: the site drops from 30 kW to 17 kW from 240 s to 480 s.
    assert site_limit(small, 149.0, LEAD_S) == 30000
    assert site_limit(small, 150.0, LEAD_S) == 17000
    assert site_limit(small, 150.0) == 30000
    assert site_limit(small, 479.0, LEAD_S) == 17000 and site_limit(small, 480.0, LEAD_S) == 30000
    assert event_edges(small, LEAD_S) == [150.0, 480.0]


@dataclass
class RecordsActs:
    name: str = "records"
    acts_s: list[float] = field(default_factory=list)

    def act(self, replica: Replica) -> None:
        self.acts_s.append(replica.clock.monotonic())

    def tick(self, replica: Replica) -> None:
        """Nothing to react to."""


def test_plans_at_the_events_edges_leave_the_refresh_schedule_as_it_was(
    small: Scenario,
) -> None:
    base = warm_replica(small, record=False)
    plain, edged = RecordsActs(), RecordsActs()
    run_policy(base, plain, small)
    run_policy(base, edged, small, edges_s=event_edges(small, LEAD_S))
    start = plain.acts_s[0]
    assert [t - start for t in plain.acts_s] == pytest.approx([0, 120, 240, 360, 480, 600, 720])
    assert [t - edged.acts_s[0] for t in edged.acts_s] == pytest.approx(
        [0, 120, 150, 240, 360, 480, 600, 720]
    )


class LowestLimits(BudgetPolicy):
    def limits(self, replica: Replica, scopes: list[BudgetScope]) -> Floats:
        return _limits(replica)[0]


def test_a_plan_reaches_the_gpus_one_applier_poll_after_it_is_made(
    small: Scenario,
) -> None:
    replica = warm_replica(small, record=False)
    lowest, _, default = _limits(replica)
    assert np.array_equal(replica.fleet.limit_w, default)
    policy = LowestLimits(small)
    policy.act(replica)
    run_for(replica, APPLIER_POLL_S - small.read_every_s, small.read_every_s, None, policy)
    assert np.array_equal(replica.fleet.limit_w, default)
    run_for(replica, small.read_every_s, small.read_every_s, None, policy)
    assert np.array_equal(replica.fleet.limit_w, lowest)
