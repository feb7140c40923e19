"""The fake NVML's power-limit setter behaves as the driver does for the calls wattwise makes."""

from __future__ import annotations

import pynvml
import pytest

from wattwise.collector.fake_nvml import FakeMig, FakeNvml


def _fake(*, root: bool = True) -> FakeNvml:
    fake = FakeNvml.h100s(2)
    fake.root = root
    fake.nvmlInit()
    return fake


def test_a_limit_set_shows_in_both_getters_of_that_gpu_only() -> None:
    fake = _fake()
    handle = fake.nvmlDeviceGetHandleByIndex(1)
    fake.nvmlDeviceSetPowerManagementLimit(handle, 450_000)
    assert fake.nvmlDeviceGetPowerManagementLimit(handle) == 450_000
    assert fake.nvmlDeviceGetEnforcedPowerLimit(handle) == 450_000
    assert fake.nvmlDeviceGetEnforcedPowerLimit(fake.nvmlDeviceGetHandleByIndex(0)) == 700_000
    assert fake.count("nvmlDeviceSetPowerManagementLimit", 1) == 1


def test_without_root_the_driver_answers_no_permission() -> None:
    fake = _fake(root=False)
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        fake.nvmlDeviceSetPowerManagementLimit(handle, 450_000)
    assert fake.nvmlDeviceGetEnforcedPowerLimit(handle) == 700_000


@pytest.mark.parametrize("limit_mw", [199_999, 700_001, 0])
def test_a_limit_outside_the_constraints_is_an_invalid_argument(limit_mw: int) -> None:
    fake = _fake()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceSetPowerManagementLimit(handle, limit_mw)
    assert fake.nvmlDeviceGetPowerManagementLimit(handle) == 700_000


def test_the_edges_of_the_constraints_are_allowed() -> None:
    fake = _fake()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    for limit_mw in (200_000, 700_000):
        fake.nvmlDeviceSetPowerManagementLimit(handle, limit_mw)
        assert fake.nvmlDeviceGetEnforcedPowerLimit(handle) == limit_mw


def test_unsupported_lost_and_mig_devices_refuse_as_the_driver_does() -> None:
    fake = _fake()
    fake.gpus[0].unsupported.add("nvmlDeviceSetPowerManagementLimit")
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceSetPowerManagementLimit(fake.nvmlDeviceGetHandleByIndex(0), 450_000)
    fake.gpus[1].mig_mode = 1
    fake.gpus[1].migs = [FakeMig(gi=1, uuid="MIG-1")]
    mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(fake.nvmlDeviceGetHandleByIndex(1), 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceSetPowerManagementLimit(mig, 450_000)
    fake.gpus[1].error = pynvml.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceSetPowerManagementLimit(fake.nvmlDeviceGetHandleByIndex(1), 450_000)
