"""Which sources a node reads, built from its settings; and ``probe``, which reads them once."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from wattwise.agent.config import AgentConfig, BmcSettings
from wattwise.agent.loop import Schedule
from wattwise.clock import Clock
from wattwise.collector.base import Reading, Source
from wattwise.common.secrets import read_secret
from wattwise.errors import ConfigError, SourceError, SourceUnavailable

log = logging.getLogger(__name__)


def build_schedules(
    config: AgentConfig,
    clock: Clock,
    environ: dict[str, str],
    unavailable: dict[str, str] | None = None,
) -> list[Schedule]:
    """The sources this node reads, each with its interval.

    A configured source that cannot be opened at all (no NVIDIA driver) is left out
    with a warning; ``unavailable``, when given, receives its name and why.
    """
    if config.agent.source == "sim":
        return _simulated(config, clock)
    return _real(config, clock, environ, {} if unavailable is None else unavailable)


def _simulated(config: AgentConfig, clock: Clock) -> list[Schedule]:
    from wattwise.collector.sim import FleetSpec, SimFleet
    from wattwise.collector.sim.spec import MAX_NODES_PER_RACK
    from wattwise.collector.sim.views import JobView

    sim = config.agent.sim
    try:
        spec = FleetSpec.uniform(
            sim.nodes, sim.gpus_per_node, racks=sim.racks, zones=sim.zones, seed=sim.seed
        )
    except ConfigError as e:
        # Name the setting the operator can change, not the simulator's rack.
        need = -(-sim.nodes // MAX_NODES_PER_RACK)
        raise ConfigError(
            "agent.sim.racks",
            sim.racks,
            f"at least {need} for {sim.nodes} nodes (a rack holds 1–{MAX_NODES_PER_RACK})",
        ) from e
    fleet = SimFleet(spec, clock)
    return [
        Schedule(fleet.gpu_source(), config.agent.gpu_interval_s),
        Schedule(fleet.node_source(), config.agent.host_interval_s),
        Schedule(JobView(fleet), config.agent.job_interval_s),
    ]


def _real(
    config: AgentConfig, clock: Clock, environ: dict[str, str], unavailable: dict[str, str]
) -> list[Schedule]:
    from wattwise.collector.host import HostSource
    from wattwise.collector.jobs import JobSource
    from wattwise.collector.nvml import open_nvml_source

    settings = config.agent
    host = settings.host_name()
    schedules = [Schedule(HostSource(host=host, clock=clock), settings.host_interval_s)]
    try:
        nvml = open_nvml_source(
            host, clock, energy_every_s=settings.energy_every_s, energy_read=settings.energy_read
        )
    except SourceUnavailable as e:
        # Said once, at start: the node is still worth watching for its host stats.
        log.warning("no GPU readings on this node: %s", e)
        unavailable["nvml"] = str(e)
    else:
        schedules.insert(0, Schedule(nvml, settings.gpu_interval_s))
        jobs = JobSource(
            host=host,
            clock=clock,
            gpu_processes=nvml.gpu_processes,
            gpu_power_w=nvml.last_power_w,
            interval_s=settings.job_interval_s,
        )
        schedules.append(Schedule(jobs, settings.job_interval_s))
    if config.bmc.kind:
        schedules.append(Schedule(_bmc(config.bmc, host, clock, environ), settings.host_interval_s))
    return schedules


def _bmc(settings: BmcSettings, host: str, clock: Clock, environ: dict[str, str]) -> Source:
    from wattwise.collector.bmc import BmcBackend, BmcSource

    backend: BmcBackend
    if settings.kind == "redfish":
        from wattwise.collector.redfish import RedfishBackend

        env_var = "WATTWISE_BMC_PASSWORD" if "WATTWISE_BMC_PASSWORD" in environ else None
        password = read_secret(
            env_var, settings.password_file, environ=environ, setting="bmc.password_file"
        )
        backend = RedfishBackend(
            base_url=settings.url,
            username=settings.username or None,
            password=password.reveal() if password else None,
            verify=settings.ca_file or True,
            timeout_s=settings.timeout_s,
        )
    else:
        from wattwise.collector.ipmi import IpmiBackend

        backend = IpmiBackend(
            timeout_s=settings.timeout_s,
            bmc_host=settings.url or None,
            username=settings.username or None,
            password_file=settings.password_file,
        )
    return BmcSource(host=host, backend=backend, clock=clock, interval_s=settings.interval_s)


@dataclass
class ProbeOutcome:
    """What one source gave when read once."""

    source: str
    readings: list[Reading] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "error": self.error,
            "readings": [
                {
                    "measurement": r.measurement,
                    "tags": dict(r.tags),
                    "fields": dict(r.fields),
                    "time_ns": r.time_ns,
                }
                for r in self.readings
            ],
        }


def probe_sources(
    config: AgentConfig, clock: Clock, environ: dict[str, str], *, settle_s: float = 1.0
) -> list[ProbeOutcome]:
    """Read every configured source and report what each gave; a failure says why.

    Each source is read twice, ``settle_s`` apart, so that rates and energy
    (differences of counters) have an interval; the second reading is reported.
    """
    from wattwise.collector.bmc import BmcSource

    failures: dict[str, str] = {}
    schedules = build_schedules(config, clock, environ, failures)
    outcomes = [ProbeOutcome(name, error=why) for name, why in failures.items()]
    for schedule in schedules:
        try:
            schedule.source.read()
        except SourceError as e:
            failures[schedule.source.name] = str(e)
    clock.sleep_until(clock.monotonic() + settle_s, threading.Event())
    for schedule in schedules:
        source = schedule.source
        try:
            if source.name in failures:
                outcomes.append(ProbeOutcome(source.name, error=failures[source.name]))
                continue
            if isinstance(source, BmcSource):
                source.poll_once()  # a probe waits for one BMC answer
                if source.failure is not None:
                    outcomes.append(ProbeOutcome(source.name, error=source.failure))
                    continue
            outcomes.append(ProbeOutcome(source.name, list(source.read())))
        except SourceError as e:
            outcomes.append(ProbeOutcome(source.name, error=str(e)))
        finally:
            source.close()
    return outcomes
