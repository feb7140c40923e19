"""The power-plan applier against the fake NVML and a real HTTP server playing the optimizer."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent.http_peer import Answer, HttpPeer, http_peer
from tests.agent.plans import HOST, NO_PLAN, budget, cap, plan_answer
from wattwise.agent.power_applier import PowerPlanApplier
from wattwise.agent.power_limits import open_nvml_limits
from wattwise.agent.power_plan import PlanClient
from wattwise.agent.power_state import StateFile
from wattwise.clock import ManualClock
from wattwise.collector.fake_nvml import FakeNvml
from wattwise.common.secrets import Secret
from wattwise.errors import ConfigError

SILENT_S = 600.0
SET = "nvmlDeviceSetPowerManagementLimit"


@dataclass
class Node:
    """Four H100s, the optimizer's endpoint and a state file; ``boot`` is this boot's id."""

    nvml: FakeNvml
    optimizer: HttpPeer
    state_path: Path
    clock: ManualClock
    boot: str = "boot-1"
    echoed: list[str] | None = None

    def applier(self, *, dry_run: bool = False) -> PowerPlanApplier:
        self.echoed = []
        return PowerPlanApplier(
            PlanClient(self.optimizer.url, Secret("t0ken"), HOST, timeout_s=5),
            open_nvml_limits(self.nvml),
            StateFile(self.state_path, boot_id=lambda: self.boot),
            clock=self.clock,
            interval_s=60,
            silent_after_s=SILENT_S,
            dry_run=dry_run,
            echo=self.echoed.append,
        )

    def answer(self, answer: Answer) -> None:
        self.optimizer.answers[0] = answer

    def limits_w(self) -> list[float]:
        return [gpu.enforced_limit_mw / 1000 for gpu in self.nvml.gpus]

    def state(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.state_path.read_text())
        return loaded


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with http_peer([NO_PLAN]) as optimizer:
        yield Node(FakeNvml.h100s(4), optimizer, tmp_path / "state.json", ManualClock())


RACK_AND_SITE = plan_answer(
    budget("rack:r01", cap(0, 480.0), cap(1, 520.0), cap(0, 300.0, host="r01-n02")),
    budget("site", cap(1, 450.0), cap(0, 500.0)),
)


def test_each_gpu_gets_the_lowest_limit_over_all_plans_and_uncapped_gpus_are_untouched(
    node: Node,
) -> None:
    node.answer(RACK_AND_SITE)
    assert node.applier().cycle()
    assert node.limits_w() == [480.0, 450.0, 700.0, 700.0]
    assert [node.nvml.count(SET, gpu) for gpu in range(4)] == [1, 1, 0, 0]
    assert node.state()["changed"] == {
        "0": {"set_w": 480.0, "enforced_w": 480.0, "default_w": 700.0},
        "1": {"set_w": 450.0, "enforced_w": 450.0, "default_w": 700.0},
    }


def test_a_second_pass_with_the_same_plan_changes_nothing(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    applier = node.applier()
    applier.cycle()
    applier.cycle()
    assert node.nvml.count(SET) == 2


def test_planned_limits_are_clamped_to_the_gpus_range(node: Node) -> None:
    node.nvml.gpus[1].max_limit_mw = 650_000
    node.answer(plan_answer(budget("site", cap(0, 150.0), cap(1, 680.0))))
    assert node.applier().cycle()
    assert node.limits_w()[:2] == [200.0, 650.0]


def test_a_gpu_goes_back_to_its_default_when_no_plan_caps_it_any_more(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    applier = node.applier()
    applier.cycle()
    node.answer(plan_answer(budget("site", cap(1, 450.0))))  # the rack's plan ended
    assert applier.cycle()
    assert node.limits_w() == [700.0, 450.0, 700.0, 700.0]
    node.answer(NO_PLAN)
    assert applier.cycle()
    assert node.limits_w() == [700.0] * 4
    assert node.state()["changed"] == {}


def test_defaults_come_back_once_the_optimizer_is_silent_for_silent_after_s(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.answer(RACK_AND_SITE)
    applier = node.applier()
    applier.cycle()
    node.answer(Answer(503, body=b'{"detail": "refit running"}'))
    node.clock.advance(SILENT_S - 1)
    assert not applier.cycle()
    assert node.limits_w()[:2] == [480.0, 450.0]  # silent, not yet for long enough
    node.clock.advance(1)
    assert not applier.cycle()
    assert node.limits_w() == [700.0] * 4
    assert "HTTP 503" in caplog.text and "no plan for 600 s" in caplog.text
    node.answer(RACK_AND_SITE)  # back: the plan applies again
    assert applier.cycle()
    assert node.limits_w()[:2] == [480.0, 450.0]


def test_a_refused_token_is_reported_and_rolls_back_after_silent_after_s(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.answer(RACK_AND_SITE)
    applier = node.applier()
    applier.cycle()
    node.answer(Answer(401, body=b'{"detail": "invalid token"}'))  # the token was revoked
    assert not applier.cycle()
    assert "refused the token (HTTP 401)" in caplog.text
    assert node.limits_w()[:2] == [480.0, 450.0]
    node.clock.advance(SILENT_S)
    applier.cycle()
    assert node.limits_w() == [700.0] * 4


def test_a_limit_someone_else_changed_is_left_alone(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.answer(RACK_AND_SITE)
    applier = node.applier()
    applier.cycle()
    operator = node.nvml.gpus[0]
    operator.power_limit_mw = operator.enforced_limit_mw = 600_000  # nvidia-smi -i 0 -pl 600
    with caplog.at_level(logging.WARNING):
        assert applier.cycle()
    assert node.limits_w()[0] == 600.0
    assert "gpu0 enforces 600 W, not the 480 W" in caplog.text
    node.clock.advance(SILENT_S)  # neither the silence rollback…
    node.answer(Answer(503))
    applier.cycle()
    assert node.limits_w() == [600.0, 700.0, 700.0, 700.0]
    node.answer(NO_PLAN)  # …nor the end of the plan puts it back
    applier.cycle()
    assert node.limits_w()[0] == 600.0
    assert node.nvml.count(SET, 0) == 1
    node.answer(RACK_AND_SITE)  # a later plan is applied again
    applier.cycle()
    assert node.limits_w()[0] == 480.0


def test_stopping_restores_the_defaults(node: Node) -> None:
    node.answer(RACK_AND_SITE)

    class StopAfterTwoPasses(ManualClock):
        passes = 0

        def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
            self.passes += 1
            if self.passes == 3:
                stop.set()  # SIGTERM arrives while the applier waits
            return super().sleep_until(deadline, stop)

    node.clock = StopAfterTwoPasses()
    node.applier().run(threading.Event())
    assert len(node.optimizer.requests) == 2
    assert node.clock.monotonic() == 1060.0  # one interval between the passes
    assert node.limits_w() == [700.0] * 4
    assert node.state()["changed"] == {}


def test_a_new_applier_undoes_what_a_killed_one_set(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    node.applier().cycle()  # then killed: nothing restored
    node.answer(NO_PLAN)
    node.applier().cycle()
    assert node.limits_w() == [700.0] * 4


def test_a_new_applier_rolls_back_at_once_when_the_optimizer_went_silent_long_ago(
    node: Node,
) -> None:
    node.answer(RACK_AND_SITE)
    node.applier().cycle()
    node.answer(Answer(503))
    node.clock.advance(SILENT_S + 60)  # the applier was down meanwhile
    node.applier().cycle()
    assert node.limits_w() == [700.0] * 4


def test_a_state_file_from_an_earlier_boot_is_ignored(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    node.applier().cycle()
    node.nvml = FakeNvml.h100s(4)  # rebooted: every limit back at its default…
    node.nvml.gpus[0].enforced_limit_mw = 480_000  # …and an operator's, set since
    node.boot = "boot-2"
    node.answer(NO_PLAN)
    node.applier().cycle()
    assert node.limits_w()[0] == 480.0  # not the applier's to restore
    assert node.nvml.count(SET) == 0


def test_a_damaged_state_file_stops_the_start_naming_it(node: Node) -> None:
    node.state_path.write_text("{not json")
    with pytest.raises(ConfigError, match="--state-file"):
        node.applier()


def test_a_dry_run_prints_what_it_would_set_and_changes_nothing(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    assert node.applier(dry_run=True).cycle()
    assert node.limits_w() == [700.0] * 4
    assert node.nvml.count(SET) == 0
    assert not node.state_path.exists()
    assert node.echoed is not None
    assert node.echoed[0].startswith("gpu0: would set 480 W (now 700 W): the lowest planned")
    assert node.echoed[1].startswith("gpu1: would set 450 W (now 700 W)")
    assert node.echoed[2:] == [f"gpu{i}: stays at 700 W: no plan caps it" for i in (2, 3)]


def test_without_permission_the_error_is_reported_and_the_pass_goes_on(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.nvml.root = False
    node.answer(RACK_AND_SITE)
    applier = node.applier()
    assert not applier.cycle()
    assert node.limits_w() == [700.0] * 4
    assert "gpu0: changing a power limit needs root" in caplog.text
    assert node.nvml.count(SET) == 2  # each capped GPU was tried
    assert node.state()["changed"] == {}
    caplog.clear()
    applier.cycle()
    assert "needs root" not in caplog.text  # said once, not on every pass


def test_a_cap_for_a_gpu_the_node_does_not_have_is_refused_and_the_rest_applied(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.answer(plan_answer(budget("site", cap(7, 400.0), cap(2, 400.0))))
    node.applier().cycle()
    assert node.limits_w() == [700.0, 700.0, 400.0, 700.0]
    assert "site caps gpu7, which this node does not have: cap refused" in caplog.text


def test_a_lost_gpu_does_not_stop_the_others(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    node.nvml.gpus[1].error = 15  # NVML_ERROR_GPU_IS_LOST
    node.answer(RACK_AND_SITE)
    assert not node.applier().cycle()
    assert node.limits_w() == [480.0, 700.0, 700.0, 700.0]
    assert "gpu1: the GPU fell off the bus" in caplog.text
    assert "does not have" not in caplog.text  # it is there, only unreadable
