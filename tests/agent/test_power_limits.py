"""GPU power limits through NVML: values in watts, the limit read back, NVML errors mapped."""

from __future__ import annotations

import pynvml
import pytest

from wattwise.agent.power_limits import (
    GpuLimits,
    NvmlLimitsLibrary,
    NvmlPowerLimits,
    PowerLimits,
    milliwatts,
    open_nvml_limits,
)
from wattwise.collector import nvml_api
from wattwise.collector.fake_nvml import FakeNvml
from wattwise.errors import PowerLimitError, SourceUnavailable


def _limits(fake: FakeNvml) -> NvmlPowerLimits:
    library: NvmlLimitsLibrary = fake  # mypy checks the fake against the protocol here
    return open_nvml_limits(library)


def test_reads_the_range_default_and_enforced_limit_in_watts() -> None:
    fake = FakeNvml.h100s(2)
    fake.gpus[1].enforced_limit_mw = 612_500
    limits: PowerLimits = _limits(fake)
    assert limits.gpus() == [0, 1]
    assert limits.limits(1) == GpuLimits(200.0, 700.0, 700.0, 612.5)


def test_sets_milliwatts_and_returns_the_enforced_limit_read_back() -> None:
    fake = FakeNvml.h100s(1)
    assert _limits(fake).set_limit(0, 480.25) == 480.25
    assert fake.gpus[0].power_limit_mw == 480_250


def test_milliwatts_never_round_above_the_limit_asked_for() -> None:
    assert milliwatts(480.0) == 480_000
    assert milliwatts(0.1 + 0.2) == 300  # 0.30000000000000004 W
    assert milliwatts(480.0004) == 480_000


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        ({"root": False}, nvml_api.ERROR_NO_PERMISSION, "needs root"),
        ({"watts": 100.0}, nvml_api.ERROR_INVALID_ARGUMENT, "outside the GPU's power-limit"),
        ({"unsupported": True}, nvml_api.ERROR_NOT_SUPPORTED, "not supported"),
        ({"lost": True}, nvml_api.ERROR_GPU_IS_LOST, "fell off the bus"),
    ],
)
def test_nvml_errors_become_power_limit_errors(
    setup: dict[str, object], code: int, words: str
) -> None:
    fake = FakeNvml.h100s(1)
    fake.root = bool(setup.get("root", True))
    if setup.get("unsupported"):
        fake.gpus[0].unsupported.add("nvmlDeviceSetPowerManagementLimit")
    limits = _limits(fake)
    if setup.get("lost"):
        fake.gpus[0].error = pynvml.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(PowerLimitError, match=words) as raised:
        limits.set_limit(0, float(setup.get("watts", 450.0)))  # type: ignore[arg-type]
    assert (raised.value.gpu, raised.value.code) == (0, code)
    assert str(raised.value).startswith("gpu0: ")
    assert isinstance(raised.value.__cause__, pynvml.NVMLError)


def test_an_unreadable_gpu_is_an_error_for_that_gpu() -> None:
    fake = FakeNvml.h100s(2)
    fake.gpus[1].unsupported.add("nvmlDeviceGetPowerManagementLimitConstraints")
    limits = _limits(fake)
    assert limits.limits(0).enforced_w == 700.0
    with pytest.raises(PowerLimitError, match=r"gpu1: .*not supported"):
        limits.limits(1)


def test_no_driver_is_one_clear_message() -> None:
    with pytest.raises(SourceUnavailable, match=r"libnvidia-ml\.so\.1 was not found"):
        open_nvml_limits(FakeNvml([], library_missing=True))


def test_close_shuts_nvml_down() -> None:
    fake = FakeNvml.h100s(1)
    _limits(fake).close()
    assert not fake.initialised
