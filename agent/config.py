"""Agent settings: pydantic models built by :func:`load_config` and passed in.

Precedence, highest first: command-line flags, ``WATTWISE_<SECTION>__<KEY>``
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

from wattwise.errors import ConfigError
from wattwise.settings import load_settings

DEFAULT_CONFIG_PATH = Path("/etc/wattwise/agent.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimSettings(_Section):
    nodes: int = Field(4, ge=1, le=100_000)
    gpus_per_node: int = Field(8, ge=1, le=16)
    racks: int = Field(1, ge=1)
    zones: int = Field(1, ge=1)
    seed: int = 0


class AgentSettings(_Section):
    host: str = Field("", description="node name tag; empty means this machine's host name")
    labels: dict[str, str] = Field(default_factory=dict)
    source: Literal["nvml", "sim"] = "nvml"
    gpu_interval_s: float = Field(1.0, gt=0, le=3600)
    host_interval_s: float = Field(10.0, gt=0, le=3600)
    job_interval_s: float = Field(30.0, gt=0, le=3600)
    energy_every_s: float = Field(10.0, gt=0, le=3600)
    energy_read: Literal["call", "field"] = "call"
    sim: SimSettings = Field(default_factory=SimSettings)

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
    timeout_s: float = Field(10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _v2_needs_bucket(self) -> InfluxSettings:
        # Raised as ConfigError (not ValueError) so the message names the exact key.
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError("influx.url", self.url, "a URL starting with http:// or https://")
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


class SenderSettings(_Section):
    batch_max_lines: int = Field(5000, ge=1, le=5000)
    backoff_initial_s: float = Field(0.5, gt=0, le=600)
    backoff_max_s: float = Field(60.0, gt=0, le=3600)
    flush_on_stop_s: float = Field(10.0, ge=0, le=600)


class BmcSettings(_Section):
    kind: Literal["", "redfish", "ipmi"] = ""
    url: str = ""
    username: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None
    interval_s: float = Field(10.0, gt=0, le=3600)
    timeout_s: float = Field(3.0, gt=0, le=60)


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
        require_file=require_file,
        example="deploy/agent.toml.example",
    )
