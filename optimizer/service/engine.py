"""The optimizer's engine: refit (store → series → models) and refresh (latest states →
recommendations), kept in memory for the API and written to the store for Grafana.

Both run on the scheduler's threads and on API requests. A refit replaces the
fitted models in one assignment and a refresh the snapshot, so readers always
see a whole, consistent set without taking a lock.

Telemetry is read through :class:`~wattwise.optimizer.store.sanity.SaneTelemetry`
(physically impossible values dropped and counted), and recommendations are
checked by :mod:`.published` before they are published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from wattwise.clock import Clock
from wattwise.collector.base import Reading
from wattwise.errors import Busy, ModelFileError, NotReady, StoreError
from wattwise.optimizer.models.cap_response import (
    CapResponseModel,
    GpuWorkloads,
    estimate_workloads,
    fit_cap_models,
)
from wattwise.optimizer.models.churn import fit_churn
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.models.node_other import fit_node_other
from wattwise.optimizer.models.node_power import fit_node_power_curves
from wattwise.optimizer.models.power import fit_power_models
from wattwise.optimizer.models.thermal import fit_cooling_models, fit_gpu_thermal, fit_inlet_models
from wattwise.optimizer.models.workload import WorkloadProfile, job_profiles, profile_set
from wattwise.optimizer.recommend.budget import plan_budgets
from wattwise.optimizer.recommend.budget_types import ActiveEvents, BudgetPlan, scopes_in_force
from wattwise.optimizer.recommend.caps import jobs_on_gpus, other_power_per_gpu, recommend_caps
from wattwise.optimizer.recommend.cooling import ThermalFits, recommend_cooling
from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.health import unhealthy_gpus
from wattwise.optimizer.recommend.placement_basis import placement_basis
from wattwise.optimizer.recommend.types import CapRecommendation, CoolingRecommendation
from wattwise.optimizer.service import lines
from wattwise.optimizer.service.fitted import Fitted, KeptModels, load_or_none
from wattwise.optimizer.service.published import checked_caps, checked_cooling
from wattwise.optimizer.service.settings import OptimizerConfig
from wattwise.optimizer.store.sanity import SaneTelemetry
from wattwise.optimizer.telemetry import GpuState, HostState, Series, TelemetryStore, ZoneState

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
"""Told what a refit is doing and how far it is (0..1); the CLI draws a bar with it."""


@dataclass(frozen=True)
class Snapshot:
    """Recommendations of one refresh and the fleet state they were computed from."""

    computed_at_ns: int
    caps: tuple[CapRecommendation, ...]
    cooling: tuple[CoolingRecommendation, ...]
    gpus: tuple[GpuState, ...]
    hosts: tuple[HostState, ...]
    zones: tuple[ZoneState, ...]
    fleet: FleetView
    """The arrays placement and the scheduler extender score nodes on."""
    where: dict[str, lines.Location] = field(default_factory=dict)
    """Host → (cluster, zone, rack)."""
    budget: tuple[BudgetPlan, ...] = ()
    """One plan per power budget in force (configured or a timed event)."""


Listener = Callable[[Snapshot], None]


class Engine:
    """Fits models and computes recommendations from one :class:`TelemetryStore`."""

    def __init__(
        self,
        store: TelemetryStore,
        config: OptimizerConfig,
        clock: Clock,
        *,
        listeners: Sequence[Listener] = (),
        events: ActiveEvents | None = None,
    ) -> None:
        self.store = store
        self.events = events
        """Timed power events (:mod:`.power_events`); without them only configured budgets."""
        self.telemetry = SaneTelemetry(store)
        self.config = config
        self.clock = clock
        self.scope = config.shard.scope()
        self._listeners = list(listeners)
        self._refit_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self.store_write_failures = 0
        self.registry_failures = 0
        registry_dir = config.models.registry_dir
        self.kept = (
            None if registry_dir is None else KeptModels(registry_dir, config.models.keep_versions)
        )
        # A restarted optimizer serves from the newest stored models until its first refit.
        self._fitted: Fitted | None = None if self.kept is None else load_or_none(self.kept)

    def add_listener(self, listener: Listener) -> None:
        """Called with every new snapshot (webhooks); must not block."""
        self._listeners.append(listener)

    @property
    def fitted(self) -> Fitted:
        if self._fitted is None:
            raise NotReady("no models yet: the first refit has not finished")
        return self._fitted

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise NotReady("no recommendations yet: the first refresh has not finished")
        return self._snapshot

    @property
    def has_models(self) -> bool:
        return self._fitted is not None

    @property
    def ready(self) -> bool:
        return self._snapshot is not None

    def refit(self, progress: Progress | None = None) -> Fitted:
        """Fit every model on the training window; raise :class:`Busy` if one is running."""
        if not self._refit_lock.acquire(blocking=False):
            raise Busy("a refit is already running")
        try:
            return self._install(self._fit(progress or _quiet))
        finally:
            self._refit_lock.release()

    def _ensure_models(self) -> Fitted:
        # The scheduler starts the first refit and refresh together: the refresh waits for
        # that refit rather than failing as Busy and leaving the API empty for an interval.
        with self._refit_lock:
            if self._fitted is None:
                self._install(self._fit(_quiet))
        return self.fitted

    def stored_models(self) -> list[ModelInfo]:
        """What the registry holds (every kept version), or the fitted set without one."""
        if self.kept is None:
            return list(self.fitted.infos)
        return self.kept.list()

    def _install(self, fitted: Fitted) -> Fitted:
        fitted = self._keep(fitted)
        self._fitted = fitted
        self._write(lines.model_readings(fitted.infos, fitted.fitted_at_ns))
        return fitted

    def _fit(self, progress: Progress) -> Fitted:
        now_ns = self.clock.time_ns()
        start_ns = now_ns - int(self.config.models.window_s * 1e9)
        every_s, scope = self.config.models.every_s, self.scope
        progress("reading telemetry", 0.0)
        read = self.telemetry
        gpus = read.gpu_series(start_ns, now_ns, every_s=every_s, scope=scope)
        hosts = read.host_series(start_ns, now_ns, every_s=every_s, scope=scope)
        zones = read.zone_series(start_ns, now_ns, every_s=every_s, scope=scope)
        jobs = read.job_series(start_ns, now_ns, every_s=every_s, scope=scope)
        progress("fitting power models", 0.3)
        power = fit_power_models(gpus)
        progress("fitting cap-response models", 0.5)
        cap = fit_cap_models(gpus)
        progress("fitting thermal models", 0.6)
        thermal = fit_gpu_thermal(gpus, hosts)
        inlets = fit_inlet_models(hosts, zones)
        cooling = fit_cooling_models(zones)
        progress("fitting node power curves", 0.8)
        curves = fit_node_power_curves(gpus, hosts) if len(hosts) else None
        profiles = profile_set(self._profiles(jobs, gpus, cap))
        progress("done", 1.0)
        fitted = Fitted(now_ns, power, cap, thermal, inlets, cooling, curves, profiles)
        log.info("refit: %d GPU rows, %d models", len(gpus), len(fitted.infos))
        return fitted

    def _profiles(
        self, jobs: Series, gpus: Series, cap: dict[str, CapResponseModel]
    ) -> dict[str, WorkloadProfile]:
        if not self.config.models.job_profiles or not len(jobs):
            return {}
        return job_profiles(jobs, gpus, cap)

    def refresh(self) -> Snapshot:
        """Recompute every recommendation from the latest states (refitting first if needed)."""
        fitted = self._fitted or self._ensure_models()
        with self._refresh_lock:
            snapshot = self._compute(fitted)
            self._snapshot = snapshot
        # Listeners first: the API's view of the new snapshot is built by one, and until
        # it is, reads answer from the previous snapshot's view; the store write takes ~0.8 s.
        for listener in self._listeners:
            listener(snapshot)
        now_ns = snapshot.computed_at_ns
        self._write(
            lines.cap_readings(snapshot.caps, snapshot.where, now_ns)
            + lines.cooling_readings(snapshot.cooling, now_ns)
            + lines.budget_readings(snapshot.budget, now_ns)
        )
        return snapshot

    def _compute(self, fitted: Fitted) -> Snapshot:
        now_ns = self.clock.time_ns()
        read = self.telemetry
        gpus = read.latest_gpus(self.scope)
        hosts = read.latest_hosts(self.scope)
        zones = read.latest_zones(self.scope)
        recent_s = self.config.recommend.recent_s
        start_ns = now_ns - int(recent_s * 1e9)
        every_s = self.config.models.every_s
        series = read.gpu_series(start_ns, now_ns, every_s=every_s, scope=self.scope)
        work = estimate_workloads(series, fitted.cap_response, recent_s=recent_s)
        unhealthy = self._unhealthy(gpus, now_ns)
        # Busy means a job is on the GPU now: only the newest two buckets count, not
        # every job the GPU ran during the whole recent window.
        busy_since_ns = now_ns - 2 * every_s * 1_000_000_000
        jobs = read.job_series(busy_since_ns, now_ns, every_s=every_s, scope=self.scope)
        on_gpus = jobs_on_gpus(jobs)
        caps = checked_caps(
            recommend_caps(
                gpus,
                work,
                self.config.caps,
                jobs=on_gpus,
                other_w=other_power_per_gpu(gpus, hosts),
                unhealthy=unhealthy,
            )
        )
        fits = ThermalFits(fitted.inlets, fitted.cooling, fitted.gpu_thermal)
        cooling = checked_cooling(
            recommend_cooling(zones, hosts, gpus, self.config.cooling, fits), self.config.cooling
        )
        busy = {
            (str(h), int(g)) for h, g in zip(_tags(jobs, "host"), _tags(jobs, "gpu"), strict=True)
        }
        fleet = FleetView.build(
            gpus,
            hosts,
            zones,
            curves=fitted.curves,
            gpu_thermal=fitted.gpu_thermal,
            inlets=fitted.inlets,
            cooling=fitted.cooling,
            busy=busy,
            unhealthy=unhealthy,
        )
        # Worked out here, off the event loop, rather than by the first placement request.
        placement_basis(fleet, self.config.placement)
        budget = self._budget(gpus, work, series, on_gpus, now_ns)
        where = {h.host: (h.cluster, h.zone, h.rack) for h in hosts}
        where.update({g.host: (g.cluster, g.zone, g.rack) for g in gpus if g.host not in where})
        return Snapshot(
            now_ns,
            tuple(caps),
            tuple(cooling),
            tuple(gpus),
            tuple(hosts),
            tuple(zones),
            fleet,
            where,
            tuple(budget),
        )

    def _budget(
        self,
        gpus: Sequence[GpuState],
        work: GpuWorkloads,
        series: Series,
        jobs: dict[tuple[str, int], str],
        now_ns: int,
    ) -> list[BudgetPlan]:
        """Plans for every budget in force: the configured ones and timed events."""
        settings = self.config.budgets
        lead_ns = int(settings.event_lead_s * 1e9)
        events = self.events.active(now_ns, lead_ns) if self.events is not None else []
        scopes = scopes_in_force(settings.configured(), events)
        if not scopes:
            return []
        start_ns = now_ns - int(self.config.recommend.recent_s * 1e9)
        every_s = self.config.models.every_s
        hosts = self.telemetry.host_series(start_ns, now_ns, every_s=every_s, scope=self.scope)
        nodes = fit_node_other(series, hosts, quantile=settings.peak_quantile)
        return plan_budgets(
            gpus,
            work,
            scopes,
            nodes,
            settings,
            jobs=jobs,
            churn=fit_churn(series),
            interval_s=settings.horizon_s(self.config.recommend.refresh_interval_s),
        )

    def _unhealthy(self, gpus: Sequence[GpuState], now_ns: int) -> dict[tuple[str, int], str]:
        """GPUs that should get no new work: pending or failed row remaps, recent fatal XIDs."""
        settings = self.config.health
        start_ns = now_ns - int(settings.xid_window_s * 1e9)
        xids = self.telemetry.xid_series(start_ns, now_ns, every_s=60, scope=self.scope)
        return unhealthy_gpus(gpus, xids, now_ns, settings)

    def _keep(self, fitted: Fitted) -> Fitted:
        # A full disk must not cost the API its fresh models: serve them unsaved.
        if self.kept is None:
            return fitted
        try:
            return self.kept.save(fitted)
        except (ModelFileError, OSError) as e:
            self.registry_failures += 1
            log.warning(
                "could not keep the refit's models in %s: %s", self.kept.registry.directory, e
            )
            return fitted

    def _write(self, readings: Sequence[Reading]) -> None:
        # The store being down must not take the API's recommendations with it.
        try:
            self.store.write(lines.encode(readings))
        except StoreError as e:
            self.store_write_failures += 1
            log.warning("could not write %d optimizer lines to the store: %s", len(readings), e)


def _tags(series: Series, name: str) -> list[str]:
    values = series.tags.get(name)
    return [] if values is None else [str(v) for v in values]


def _quiet(step: str, share: float) -> None:
    log.debug("refit: %s (%.0f %%)", step, 100 * share)
