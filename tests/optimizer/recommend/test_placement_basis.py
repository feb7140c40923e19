"""The per-refresh basis of placement: built once, laid out per node, shared by copies."""

from __future__ import annotations

import dataclasses

from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.recommend.placement_basis import placement_basis
from wattwise.optimizer.recommend.settings import PlacementSettings
from wattwise.optimizer.telemetry import GpuState

H100 = "NVIDIA H100 80GB HBM3"


def gpu(host: str, index: int, *, util: float = 0.0, model: str = H100) -> GpuState:
    return GpuState(
        host=host, gpu=index, uuid="", model=model, cluster="c", zone="z1", rack="r1",
        time_ns=0, power_w=90.0 + 5 * util, temp_c=40.0, util_gpu_pct=util, util_mem_pct=0.0,
        sm_clock_mhz=1980.0, power_limit_w=700.0, enforced_limit_w=700.0, min_limit_w=200.0,
        max_limit_w=700.0, default_limit_w=700.0, slowdown_temp_c=87.0, mem_used_bytes=0.0,
        mem_total_bytes=80e9, failed=False,
    )  # fmt: skip


def test_basis_is_built_once_per_view_and_shared_by_the_extenders_settings_copies() -> None:
    view = FleetView.build([gpu("a", 0), gpu("b", 0)], [], [])
    settings = PlacementSettings(rack_budgets_w={"r1": 5_000.0})
    first = placement_basis(view, settings)
    assert placement_basis(view, settings) is first
    # The extender copies the settings with another max_candidates: nothing the basis uses.
    assert placement_basis(view, settings.model_copy(update={"max_candidates": 99})) is first
    tighter = placement_basis(view, PlacementSettings(rack_budgets_w={"r1": 1_000.0}))
    assert tighter is not first and tighter.node_rack_spare_w[0] < first.node_rack_spare_w[0]
    # A view changed by dataclasses.replace must not inherit the old view's basis.
    changed = dataclasses.replace(view, rack_power_w=view.rack_power_w + 500.0)
    assert placement_basis(changed, settings).node_rack_spare_w[0] == (
        first.node_rack_spare_w[0] - 500.0
    )


def test_slots_hold_each_nodes_gpus_in_row_order_padded_for_smaller_nodes() -> None:
    # Readings arrive interleaved across hosts, and host "b" has only two GPUs.
    states = [gpu("a", 0), gpu("b", 0), gpu("a", 1), gpu("a", 2), gpu("b", 1, util=90.0)]
    view = FleetView.build(states, [], [])
    basis = placement_basis(view, PlacementSettings())
    assert basis.slot_gpu.tolist() == [[0, 2, 3], [1, 4, -1]]
    assert basis.slot_free.tolist() == [[True, True, True], [True, False, False]]
    assert basis.models_matching("H100").tolist() == [[True, True, True], [True, True, False]]


def test_candidate_gpus_are_free_ones_of_the_chosen_node_never_padding_or_busy() -> None:
    # "b" has 3 GPUs with the middle one busy; a 2-GPU job there must get GPUs 0 and 2.
    states = [gpu("b", 0), gpu("b", 1, util=95.0), gpu("b", 2)]
    states += [gpu("a", i, util=95.0 if i else 0.0) for i in range(8)]
    view = FleetView.build(states, [], [])
    result = recommend_placement(PlacementRequest(gpus=2), view, PlacementSettings())
    assert [(c.host, c.gpus) for c in result.candidates] == [("b", (0, 2))]
    assert result.rejected == {"a": "fewer than 2 free GPUs that fit the request"}


def test_a_job_larger_than_any_node_is_rejected_everywhere() -> None:
    view = FleetView.build([gpu("a", i) for i in range(4)], [], [])
    result = recommend_placement(PlacementRequest(gpus=8), view, PlacementSettings())
    assert result.candidates == () and set(result.rejected) == {"a"}
