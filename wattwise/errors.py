"""The error hierarchy of wattwise.

Every error wattwise raises on purpose derives from :class:`WattwiseError`, so a
caller can catch one type. Errors from vendor libraries (NVML, psutil, httpx,
sqlite3) are converted where they are caught, in one place per library, with
``raise ... from e`` so the original stays visible in tracebacks::

    WattwiseError
    ├── ConfigError            a setting is missing or not allowed (CLI exits 2)
    ├── SourceError            a hardware source could not be read
    │   ├── SourceUnavailable  the whole source is absent (no NVML library, no BMC)
    │   └── DeviceError        one device failed; the others keep being read
    │       └── DeviceLost     the device fell off the bus (NVML_ERROR_GPU_IS_LOST)
    ├── EncodeError            a name or value cannot be written as line protocol
    ├── WalError               the write-ahead log is unusable (disk, permissions)
    ├── DeliveryError          a batch could not be delivered to the store
    │   ├── TransientDeliveryError   retry later (connection refused, 5xx, 429)
    │   ├── AuthError          401/403: data kept, operator must fix credentials
    │   ├── BatchTooLarge      413: the sender splits the batch
    │   └── RejectedBatch      the store refuses the data itself (malformed,
    │                          type conflict): it goes to the dead-letter file
    ├── AgentError             the agent cannot go on (its sender thread ended):
    │                          it exits 1 so that its unit restarts it
    ├── InstallError           `wattwise agent install` cannot proceed (not root,
    │                          a command failed, files in a place the unit hides)
    ├── PowerPlanError         `wattwise agent apply-power-plan` cannot get or apply a plan
    │   ├── PlanUnavailable    the optimizer gave no plan (unreachable, timed out, 5xx,
    │   │                      not a plan): after silent_after_s the limits roll back
    │   ├── PlanAuthError      401/403: the token is wrong or lacks the read scope
    │   └── PowerLimitError    NVML refused to read or set one GPU's power limit (not
    │                          root, out of range, unsupported, lost); the others go on
    ├── StoreError             the optimizer's telemetry store cannot answer
    │   ├── StoreUnavailable   unreachable, timed out, 5xx: ask again later
    │   ├── StoreAuthError     401/403: the credentials or their permissions are wrong
    │   └── StoreQueryError    the store refused the query (no such database, bad query)
    ├── ModelFileError         a stored model is unreadable or refused (tampered,
    │                          wrong types, object arrays): it is never executed
    ├── OptimizerError         the optimizer service cannot answer this request now
    │   ├── NotReady           no recommendations yet (first refit or refresh pending)
    │   └── Busy               a refit is already running
    └── ApiError               a command run against the optimizer's API got no answer
        ├── ApiUnavailable     unreachable, timed out, 5xx, or not the API's JSON
        ├── ApiAuthError       401/403: the token is wrong or lacks the scope
        └── ApiRefused         another 4xx: the API's own words on what is wrong
"""

from __future__ import annotations

import re

_SECRET_KEY = re.compile(r"(token|password|passwd|secret|credential|api_?key|private_?key)s?$")
"""A setting whose value may be a secret: its value is never repeated in a message."""


def looks_secret(key: str) -> bool:
    """Whether the dotted setting ``key`` may hold a secret itself (``*_file`` names a file)."""
    last = next((part for part in reversed(key.split(".")) if not part.isdigit()), "")
    return not last.endswith("_file") and bool(_SECRET_KEY.search(last.lower()))


class WattwiseError(Exception):
    """Root of every error wattwise raises on purpose."""


class _Missing:
    def __repr__(self) -> str:
        return "nothing"


MISSING: object = _Missing()
"""The value of a required key that was not given (shown as ``nothing``)."""


class ConfigError(WattwiseError):
    """A configuration value is missing or not allowed.

    ``key`` is the dotted name of the setting, ``value`` what was given and
    ``allowed`` a short description of what would be accepted. The value of a
    secret-looking key (``influx.token``, ``…password``) is never shown, unless
    the caller vouches that ``value`` describes where a secret is (a file, a
    variable's name) rather than being one (``describes_source``). ``problem`` says
    what is wrong with the value where "is not allowed" would mislead: a file that
    "does not exist" is not a value someone chose badly.
    """

    def __init__(
        self,
        key: str,
        value: object,
        allowed: str,
        *,
        describes_source: bool = False,
        problem: str = "is not allowed",
    ) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        hidden = looks_secret(key) and not describes_source and value is not MISSING
        shown = "the value (not shown: it may be a secret)" if hidden else repr(value)
        if value is MISSING and problem == "is not allowed":
            problem = "was given"  # "nothing was given", not "nothing is not allowed"
        super().__init__(f"{key}: {shown} {problem}; it must be {allowed}")


class SourceError(WattwiseError):
    """A hardware source could not be read."""


class SourceUnavailable(SourceError):
    """The whole source is absent on this machine (library, device or BMC missing)."""


class DeviceError(SourceError):
    """One device of a source failed; readings of the other devices continue."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"{device}: {message}")


class DeviceLost(DeviceError):
    """The device is gone from the bus until it is reset or the node rebooted."""


class EncodeError(WattwiseError):
    """A measurement, tag, field or value cannot be expressed in line protocol."""


class WalError(WattwiseError):
    """The write-ahead log cannot be opened, written or read."""


class DeliveryError(WattwiseError):
    """A batch could not be delivered to the telemetry store."""


class TransientDeliveryError(DeliveryError):
    """Delivery failed for a reason that may pass; ``retry_after_s`` if the server said."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class AuthError(DeliveryError):
    """The store refused the credentials (401/403); the data is kept for later."""


class BatchTooLarge(DeliveryError):
    """The store refused the request body as too large (413)."""


class RejectedBatch(DeliveryError):
    """The store refused the data itself; retrying the same bytes cannot succeed."""


class AgentError(WattwiseError):
    """The running agent lost a part it cannot run without; it exits for its unit to restart it."""


class InstallError(WattwiseError):
    """Installing the agent as a service failed or cannot be done as asked."""


class PowerPlanError(WattwiseError):
    """The power-plan applier cannot get a plan from the optimizer or apply it."""


class PlanUnavailable(PowerPlanError):
    """The optimizer did not answer with a plan; the same request may succeed later."""


class PlanAuthError(PowerPlanError):
    """The optimizer refused the applier's token (401/403)."""


class PowerLimitError(PowerPlanError):
    """NVML refused to read or set a GPU's power limit (``gpu`` None: NVML as a whole, such
    as counting the GPUs); ``code`` is NVML's return code."""

    def __init__(self, gpu: int | None, message: str, code: int | None = None) -> None:
        self.gpu = gpu
        self.code = code
        super().__init__(message if gpu is None else f"gpu{gpu}: {message}")


class StoreError(WattwiseError):
    """The optimizer's telemetry store (InfluxDB or the embedded store) cannot answer."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or is overloaded; the same request may succeed later."""


class StoreAuthError(StoreError):
    """The store refused the credentials (401/403)."""


class StoreQueryError(StoreError):
    """The store refused the request itself: a missing database, a query it cannot run."""


class ModelFileError(WattwiseError):
    """A stored model file is missing, unreadable or refused (unexpected keys, types or
    array kinds): the model registry never unpickles, so such a file cannot run code."""


class OptimizerError(WattwiseError):
    """The optimizer service cannot answer a request now (the API answers 503 or 409)."""


class NotReady(OptimizerError):
    """No recommendations or models yet: the first refit or refresh has not finished."""


class Busy(OptimizerError):
    """The same job (a refit) is already running; ask again when it is done."""


class ApiError(WattwiseError):
    """A command run against the optimizer's HTTP API (``wattwise power-events``) did not
    get what it asked for."""


class ApiUnavailable(ApiError):
    """No usable answer: unreachable, timed out, a 5xx, or a body that is not the API's."""


class ApiAuthError(ApiError):
    """The API refused the token (401) or its scope (403)."""


class ApiRefused(ApiError):
    """The API refused the request itself (a 4xx other than 401/403); the message is
    the API's, and ``status`` its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)
