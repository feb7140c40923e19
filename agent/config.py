"""Agent settings: pydantic models built by :func:`load_config` and passed in.

Precedence, highest first: command-line flags, ``WATTWISE_AGENT_<SECTION>__<KEY>``
environment variables, the TOML file, the defaults below. Secrets never come
from flags: they are read from files named here or from
``WATTWISE_INFLUX_PASSWORD`` / ``WATTWISE_INFLUX_TOKEN`` /
``WATTWISE_BMC_PASSWORD`` (see :mod:`wattwise.common.secrets`).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wattwise.common.lineproto import check_label
from wattwise.errors import ConfigError, EncodeError
from wattwise.settings import AGENT_ENV_PREFIX, check_http_url, load_settings

DEFAULT_CONFIG_PATH = Path("/etc/wattwise/agent.toml")
STOP_BUDGET_S = 25.0
"""What a stopping agent may spend: the unit's TimeoutStopSec=30s, less time to close."""
MIN_INTERVAL_S = 0.1
"""Faster sampling only burns a core (NVML's power reading is a 1 s average)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimSettings(_Section):
    nodes: int = Field(4, ge=1, le=100_000)
    gpus_per_node: int = Field(8, ge=1, le=16)
    racks: int = Field(1, ge=1)
    zones: int = Field(1, ge=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _fits(self) -> SimSettings:
        if self.racks > self.nodes:
            raise ConfigError(
                "agent.sim.racks", self.racks, f"at most agent.sim.nodes ({self.nodes})"
            )
        if self.zones > self.racks:
            raise ConfigError(
                "agent.sim.zones", self.zones, f"at most agent.sim.racks ({self.racks})"
            )
        return self


class AgentSettings(_Section):
    host: str = Field("", description="node name tag; empty means this machine's host name")
    labels: dict[str, str] = Field(default_factory=dict)
    source: Literal["nvml", "sim"] = "nvml"
    gpu_interval_s: float = Field(1.0, ge=MIN_INTERVAL_S, le=3600)
    host_interval_s: float = Field(10.0, ge=MIN_INTERVAL_S, le=3600)
    job_interval_s: float = Field(30.0, ge=MIN_INTERVAL_S, le=3600)
    energy_every_s: float = Field(10.0, ge=MIN_INTERVAL_S, le=3600)
    energy_read: Literal["call", "field"] = "call"
    sim: SimSettings = Field(default_factory=SimSettings)

    @model_validator(mode="after")
    def _encodable(self) -> AgentSettings:
        # Found only when encoding, a bad label would cost every line of the node.
        try:
            if self.host:
                check_label("host", self.host)
        except EncodeError as e:
            raise ConfigError(
                "agent.host", self.host, f"a name line protocol can carry ({e})"
            ) from e
        for key, value in self.labels.items():
            try:
                check_label(key, value)
            except EncodeError as e:
                raise ConfigError(
                    f"agent.labels.{key}", value, f"a label line protocol can carry ({e})"
                ) from e
        return self

    def host_name(self) -> str:
        return self.host or socket.gethostname()


class InfluxSettings(_Section):
    url: str = ""
    api: Literal["v1", "v2"] = "v1"
    database: str = "wattwise"
    retention_policy: str = ""
    username: str = ""
    password_file: Path | None = None
    org: str = ""
    bucket: str = ""
    token_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: float = Field(10.0, gt=0, le=20, description="a whole request")

    @model_validator(mode="after")
    def _v2_needs_bucket(self) -> InfluxSettings:
        # Raised as ConfigError (not ValueError) so the message names the exact key.
        if self.url:
            check_http_url("influx.url", self.url, password_key="influx.password_file")
        if self.url and self.api == "v2" and not self.bucket:
            raise ConfigError("influx.bucket", self.bucket, "a bucket name when influx.api = 'v2'")
        return self


class StoreSettings(_Section):
    kind: Literal["influx", "embedded"] = "influx"
    embedded_path: Path = Path("/var/lib/wattwise/wattwise.sqlite")


class WalSettings(_Section):
    dir: Path = Path("/var/lib/wattwise/wal")
    max_bytes: int = Field(1 << 30, ge=1 << 20)
    sync: Literal["always", "interval", "none"] = "interval"
    dead_letter_dir: Path | None = None
    dead_letter_max_bytes: int = Field(64 << 20, ge=4096)

    def dead_letters(self) -> Path:
        """Where refused lines go: ``dead_letter_dir``, or ``dead-letter`` beside the WAL."""
        return self.dead_letter_dir or self.dir.parent / "dead-letter"


class SenderSettings(_Section):
    batch_max_lines: int = Field(5000, ge=1, le=5000)
    backoff_initial_s: float = Field(0.5, gt=0, le=600)
    backoff_max_s: float = Field(60.0, gt=0, le=3600)
    flush_on_stop_s: float = Field(10.0, ge=0, le=20)
    hold_after_rejected_batches: int = Field(
        3, ge=1, description="whole batches refused in a row before data is held, not dead-lettered"
    )


class BmcSettings(_Section):
    kind: Literal["", "redfish", "ipmi"] = ""
    url: str = ""
    username: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None
    interval_s: float = Field(10.0, ge=1, le=3600)
    timeout_s: float = Field(3.0, gt=0, le=10)

    @model_validator(mode="after")
    def _no_credentials_in_url(self) -> BmcSettings:
        if self.url:
            check_http_url("bmc.url", self.url, password_key="bmc.password_file")
        return self


class MetricsSettings(_Section):
    prometheus_port: int = Field(0, ge=0, le=65535)
    prometheus_address: str = Field("127.0.0.1", min_length=1)
    export_readings: bool = False


class AgentConfig(_Section):
    agent: AgentSettings = Field(default_factory=AgentSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    wal: WalSettings = Field(default_factory=WalSettings)
    sender: SenderSettings = Field(default_factory=SenderSettings)
    bmc: BmcSettings = Field(default_factory=BmcSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @model_validator(mode="after")
    def _stops_in_time(self) -> AgentConfig:
        # On SIGTERM the tick under way ends (a BMC poll at most bmc.timeout_s), the
        # request under way ends (influx.timeout_s), then the flush: all before systemd's
        # TimeoutStopSec=30s kills the agent mid-write.
        bmc_s = self.bmc.timeout_s if self.bmc.kind else 0.0
        left = STOP_BUDGET_S - bmc_s - self.influx.timeout_s
        if self.sender.flush_on_stop_s > left:
            raise ConfigError(
                "sender.flush_on_stop_s",
                self.sender.flush_on_stop_s,
                f"at most {max(left, 0):g} s beside influx.timeout_s = {self.influx.timeout_s:g}"
                f"{f' and bmc.timeout_s = {bmc_s:g}' if bmc_s else ''}: the three must fit in "
                f"{STOP_BUDGET_S:g} s, within the unit's TimeoutStopSec=30s",
            )
        return self


def require_store_target(config: AgentConfig) -> None:
    """Refuse a configuration that could read but not deliver (``run``, ``check-config``).

    Kept out of the model so that ``agent probe`` works on a node with no store set up yet.
    """
    if config.store.kind == "influx" and not config.influx.url:
        raise ConfigError(
            "influx.url", "", "an InfluxDB URL, or store.kind = 'embedded' for the local store"
        )


def load_config(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_file: bool = False,
) -> AgentConfig:
    """The agent's settings (see :func:`wattwise.settings.load_settings`)."""
    return load_settings(
        AgentConfig,
        path,
        overrides,
        env,
        env_prefix=AGENT_ENV_PREFIX,
        require_file=require_file,
        example="deploy/agent.toml.example",
    )
