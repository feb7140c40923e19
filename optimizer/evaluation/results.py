"""What an evaluation reports: per policy its realized outcomes, per experiment its targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from wattwise.optimizer.evaluation.replica import PolicyRun

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class PolicyResult:
    """Realized outcomes of one policy over the measured horizon (twin ground truth)."""

    policy: str
    gpu_energy_kwh: float
    it_energy_kwh: float
    cooling_energy_kwh: float
    total_energy_kwh: float
    """IT (at the power supplies) plus cooling."""
    work_gpu_h: float
    """Work done, in GPU-hours at the maximum clock."""
    saving_pct: float
    """Against the experiment's reference baseline, on the experiment's energy measure."""
    slowdown_pct: float
    """Fleet work lost against the reference baseline (negative: more work done)."""
    inlet_within_pct: float
    max_inlet_c: float
    rack_over_samples: int
    worst_rack_share: float
    thermal_throttled_gpu_s: float
    detail: dict[str, float] = field(default_factory=dict)
    setting: str = ""


@dataclass(frozen=True)
class Target:
    """One target of the issue, checked on this scenario."""

    name: str
    value: float
    threshold: float
    met: bool
    text: str


@dataclass(frozen=True)
class ExperimentResult:
    name: str
    reference: str
    measure: str
    """Which energy the saving is of (GPU energy per work, total energy, cooling energy)."""
    policies: tuple[PolicyResult, ...]
    targets: tuple[Target, ...]
    notes: tuple[str, ...] = ()

    def policy(self, name: str) -> PolicyResult:
        return next(p for p in self.policies if p.policy == name)


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    description: str
    truth: str
    """Which of the twin's truths the scenario ran under."""
    seed: int
    gpus: int
    experiments: tuple[ExperimentResult, ...]
    elapsed_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def all_met(self) -> bool:
        return all(t.met for e in self.experiments for t in e.targets)


def policy_result(
    run: PolicyRun,
    *,
    saving_pct: float,
    slowdown_pct: float,
    detail: dict[str, float] | None = None,
    setting: str = "",
) -> PolicyResult:
    m = run.meter
    return PolicyResult(
        policy=run.policy,
        gpu_energy_kwh=m.gpu_energy_j / J_PER_KWH,
        it_energy_kwh=m.it_energy_j / J_PER_KWH,
        cooling_energy_kwh=m.cooling_energy_j / J_PER_KWH,
        total_energy_kwh=(m.it_energy_j + m.cooling_energy_j) / J_PER_KWH,
        work_gpu_h=m.work_gpu_s / 3600.0,
        saving_pct=saving_pct,
        slowdown_pct=slowdown_pct,
        inlet_within_pct=100.0 * m.inlet_share_within(),
        max_inlet_c=m.max_inlet_c(),
        rack_over_samples=m.rack_over,
        worst_rack_share=m.worst_rack_share if np.isfinite(m.worst_rack_share) else 0.0,
        thermal_throttled_gpu_s=m.throttled_gpu_s,
        detail=detail or {},
        setting=setting,
    )
