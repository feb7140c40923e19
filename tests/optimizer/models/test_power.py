"""Power-versus-load model on the real H100 telemetry: honest errors, and utilization alone
is not enough."""

from __future__ import annotations

import numpy as np

from tests.optimizer.h100 import MODEL, h100_series
from wattwise.optimizer.models.power import fit_power_models
from wattwise.optimizer.telemetry import Series


def _rows(s: Series, mask: np.ndarray) -> Series:
    return Series(
        s.time_ns[mask],
        {k: v[mask] for k, v in s.tags.items()},
        {k: v[mask] for k, v in s.values.items()},
    )


def _held_out_errors(period: int = 4) -> list[tuple[float, float, float, float]]:
    """(reported, measured) MAE of the full and the utilization-only model per split, where
    every ``period``-th 10 s block of the file is held out from the fit."""
    series, _ = h100_series()
    out = []
    for offset in range(period):
        test = (series.time_ns // 10**10) % period == offset
        model = fit_power_models(_rows(series, ~test), block_s=10)[MODEL]
        held = _rows(series, test)
        truth = held.values["power_w"]
        out.append(
            (
                model.info.errors["mae_w"],
                float(np.mean(np.abs(model.predict(held) - truth))),
                model.util_only_errors["mae_w"],
                float(np.mean(np.abs(model.predict_util_only(held) - truth))),
            )
        )
    return out


def test_reported_error_is_the_error_measured_on_held_out_h100_data() -> None:
    errors = np.array(_held_out_errors())
    reported, measured = errors[:, 0].mean(), errors[:, 1].mean()
    assert abs(reported - measured) <= 0.25 * measured
    assert np.all(errors[:, 0] <= 2.0 * errors[:, 1])
    assert np.all(errors[:, 1] <= 2.0 * errors[:, 0])


def test_utilization_alone_misses_h100_power_by_twice_the_full_model() -> None:
    errors = np.array(_held_out_errors())
    full, util_only = errors[:, 1].mean(), errors[:, 3].mean()
    assert util_only >= 2.0 * full
    assert util_only > 60.0  # the copy at 98 % utilization draws 393 W, the matmul 699 W


def test_power_model_reports_idle_power_envelope_window_and_samples() -> None:
    series, _ = h100_series()
    model = fit_power_models(series, block_s=10)[MODEL]
    assert 70.0 <= model.idle_power_w <= 140.0
    low, high = model.envelope_w
    assert low < 100.0 < 690.0 < high <= 705.0
    assert model.info.samples == len(series)
    assert model.info.window_start_ns == int(series.time_ns.min())
    assert model.info.window_end_ns == int(series.time_ns.max())
    assert model.top_clock_mhz == 1980.0
