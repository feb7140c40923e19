"""The NVML boundary: ABI numbers, the one error conversion, field-value decoding."""

from __future__ import annotations

import pynvml
import pytest

from wattwise.collector import nvml_api
from wattwise.collector.fake_nvml import FakeNvml
from wattwise.collector.nvml_api import call_nvml, field_value, nvml_error
from wattwise.errors import DeviceError, DeviceLost

ABI_NAMES = {
    "SUCCESS": "NVML_SUCCESS",
    "ERROR_NOT_SUPPORTED": "NVML_ERROR_NOT_SUPPORTED",
    "ERROR_INVALID_ARGUMENT": "NVML_ERROR_INVALID_ARGUMENT",
    "ERROR_NO_PERMISSION": "NVML_ERROR_NO_PERMISSION",
    "ERROR_NOT_FOUND": "NVML_ERROR_NOT_FOUND",
    "ERROR_DRIVER_NOT_LOADED": "NVML_ERROR_DRIVER_NOT_LOADED",
    "ERROR_LIBRARY_NOT_FOUND": "NVML_ERROR_LIBRARY_NOT_FOUND",
    "ERROR_FUNCTION_NOT_FOUND": "NVML_ERROR_FUNCTION_NOT_FOUND",
    "ERROR_GPU_IS_LOST": "NVML_ERROR_GPU_IS_LOST",
    "TEMPERATURE_GPU": "NVML_TEMPERATURE_GPU",
    "TEMPERATURE_THRESHOLD_SLOWDOWN": "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN",
    "CLOCK_SM": "NVML_CLOCK_SM",
    "CLOCK_MEM": "NVML_CLOCK_MEM",
    "FI_ECC_SBE_VOL_TOTAL": "NVML_FI_DEV_ECC_SBE_VOL_TOTAL",
    "FI_ECC_DBE_VOL_TOTAL": "NVML_FI_DEV_ECC_DBE_VOL_TOTAL",
    "FI_MEMORY_TEMP": "NVML_FI_DEV_MEMORY_TEMP",
    "FI_TOTAL_ENERGY_CONSUMPTION": "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "FI_POWER_INSTANT": "NVML_FI_DEV_POWER_INSTANT",
    "FI_PCIE_COUNT_TX_BYTES": "NVML_FI_DEV_PCIE_COUNT_TX_BYTES",
    "FI_PCIE_COUNT_RX_BYTES": "NVML_FI_DEV_PCIE_COUNT_RX_BYTES",
}


@pytest.mark.parametrize(("ours", "theirs"), sorted(ABI_NAMES.items()))
def test_abi_numbers_match_pynvml(ours: str, theirs: str) -> None:
    assert getattr(nvml_api, ours) == getattr(pynvml, theirs)


def test_gpu_is_lost_becomes_device_lost() -> None:
    error = nvml_error(pynvml.NVML_ERROR_GPU_IS_LOST, "gpu3")
    assert isinstance(error, DeviceLost)
    assert error.device == "gpu3"


@pytest.mark.parametrize(
    "code",
    [
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_NO_PERMISSION,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
    ],
)
def test_unsupported_codes_mean_missing(code: int) -> None:
    assert nvml_error(code, "gpu0") is None


@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_RESET_REQUIRED, pynvml.NVML_ERROR_TIMEOUT]
)
def test_other_codes_are_device_errors_but_not_lost(code: int) -> None:
    error = nvml_error(code, "gpu0")
    assert isinstance(error, DeviceError) and not isinstance(error, DeviceLost)
    assert f"NVML error {code}" in str(error)


def test_call_nvml_chains_the_pynvml_error() -> None:
    nvml = FakeNvml.h100s(1)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    nvml.gpus[0].error = pynvml.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(DeviceLost) as info:
        call_nvml(nvml, "gpu0", nvml.nvmlDeviceGetPowerUsage, handle)
    lost_class = pynvml.nvmlExceptionClass(pynvml.NVML_ERROR_GPU_IS_LOST)
    assert isinstance(info.value.__cause__, lost_class)


def test_field_value_decodes_by_value_type() -> None:
    entry = pynvml.c_nvmlFieldValue_t()
    entry.nvmlReturn, entry.valueType = pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_DOUBLE
    entry.value.dVal = 12.5
    assert field_value(entry, "gpu0") == 12.5
    entry.valueType, entry.value.ullVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, 2**40
    assert field_value(entry, "gpu0") == 2**40


def test_field_value_failure_is_missing_unless_the_gpu_is_lost() -> None:
    entry = pynvml.c_nvmlFieldValue_t()
    entry.nvmlReturn = pynvml.NVML_ERROR_UNKNOWN
    assert field_value(entry, "gpu0") is None
    entry.nvmlReturn = pynvml.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(DeviceLost):
        field_value(entry, "gpu0")
