"""Optimizer settings: frozen pydantic models built by :func:`load_optimizer_config`.

Precedence, highest first: command-line flags, ``WATTWISE_OPTIMIZER_<SECTION>__<KEY>``
environment variables, the TOML file, the defaults below (the same rules as
the agent's :mod:`wattwise.agent.config`). API tokens are configured as the
SHA-256 of the token, never the token; the webhook secret comes from a file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wattwise.optimizer.recommend.health import HealthSettings
from wattwise.optimizer.recommend.settings import (
    BudgetSettings,
    CapSettings,
    CoolingSettings,
    PlacementSettings,
)
from wattwise.optimizer.store.settings import StoreSettings
from wattwise.optimizer.telemetry import Scope
from wattwise.settings import OPTIMIZER_ENV_PREFIX, check_http_url, load_settings

DEFAULT_CONFIG_PATH = Path("/etc/wattwise/optimizer.toml")
Scopes = Literal["read", "admin", "extender"]
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiToken(_Section):
    """One client: the SHA-256 (hex) of its bearer token and what it may do.

    ``read``: recommendations, power events, models, placement, metrics. ``admin``:
    refit, refresh, and adding or cancelling power events (and everything ``read``
    may). ``extender``: only the Kubernetes
    scheduler-extender endpoints, as a bearer token or in the URL path.
    """

    name: str = Field(min_length=1)
    sha256: str
    scopes: tuple[Scopes, ...] = ("read",)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _SHA256_HEX.match(value.lower()):
            raise ValueError("64 hex digits, the SHA-256 of the token (printf %s T | sha256sum)")
        return value.lower()


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    tokens: tuple[ApiToken, ...] = ()
    metrics_public: bool = Field(False, description="serve /metrics without a token")
    access_log: bool = Field(
        False, description="one log line per request (uvicorn's access log; off: /metrics counts)"
    )
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    max_body_bytes: int = Field(
        8 << 20, ge=1024, le=256 << 20, description="larger request bodies are refused (413)"
    )
    request_timeout_s: float = Field(
        30.0, gt=0, le=600, description="a request must arrive whole this soon (else 408)"
    )


class ModelSettings(_Section):
    refit_interval_s: float = Field(3600.0, gt=0)
    window_s: float = Field(86400.0, gt=0, description="telemetry each refit learns from")
    every_s: int = Field(60, ge=1, le=3600, description="aggregation bucket of the series")
    registry_dir: Path | None = Field(None, description="where fitted models are kept")
    keep_versions: int = Field(24, ge=1, le=10_000, description="versions kept per model")
    job_profiles: bool = Field(True, description="profile jobs from gpu_job for placement")


class RecommendSettings(_Section):
    refresh_interval_s: float = Field(300.0, gt=0)
    recent_s: float = Field(900.0, gt=0, description="recent work a cap is chosen for")


class WebhookTarget(_Section):
    url: str
    events: tuple[Literal["power_cap", "cooling", "power_budget"], ...] = (
        "power_cap",
        "cooling",
        "power_budget",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Deliveries are signed with webhooks.secret_file; a password in the URL would be
        # in every log line that names the target.
        check_http_url("webhooks.targets.url", value, password_key="webhooks.secret_file")
        return value


class WebhookSettings(_Section):
    targets: tuple[WebhookTarget, ...] = ()
    secret_file: Path | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_initial_s: float = Field(1.0, gt=0, le=600)
    backoff_max_s: float = Field(60.0, gt=0, le=3600)
    queue_size: int = Field(100, ge=1, le=100_000)
    cap_change_w: float = Field(25.0, ge=0, description="a cap change this large is material")
    setpoint_change_c: float = Field(0.5, ge=0, description="a setpoint change this large is")


class ShardSettings(_Section):
    """The part of the fleet this instance reads and serves (empty = all)."""

    clusters: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()

    def scope(self) -> Scope:
        return Scope(clusters=self.clusters, zones=self.zones)


class OptimizerConfig(_Section):
    api: ApiSettings = Field(default_factory=ApiSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    caps: CapSettings = Field(default_factory=CapSettings)
    placement: PlacementSettings = Field(default_factory=PlacementSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    cooling: CoolingSettings = Field(default_factory=CoolingSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    shard: ShardSettings = Field(default_factory=ShardSettings)

    @model_validator(mode="after")
    def _one_rack_limit(self) -> OptimizerConfig:
        """A rack's limit may be given as ``budgets.rack_w`` or, as before budgets were
        planned, ``placement.rack_budgets_w``: placement and the budget plan both honour
        either (the lower where a rack has both)."""
        racks = {**self.placement.rack_budgets_w}
        for rack, limit in self.budgets.rack_w.items():
            racks[rack] = min(limit, racks.get(rack, limit))
        if racks == self.placement.rack_budgets_w and racks == self.budgets.rack_w:
            return self
        placement = self.placement.model_copy(update={"rack_budgets_w": racks})
        budgets = self.budgets.model_copy(update={"rack_w": racks})
        object.__setattr__(self, "placement", placement)
        object.__setattr__(self, "budgets", budgets)
        return self


def load_optimizer_config(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_file: bool = False,
) -> OptimizerConfig:
    """The optimizer's settings (see :func:`wattwise.settings.load_settings`)."""
    return load_settings(
        OptimizerConfig,
        path,
        overrides,
        env,
        env_prefix=OPTIMIZER_ENV_PREFIX,
        require_file=require_file,
        example="deploy/optimizer.toml.example",
    )
