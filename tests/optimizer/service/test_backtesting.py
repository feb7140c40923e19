"""``wattwise models backtest`` end to end: the twin's telemetry in the embedded store and in
a real influxd, through the ``wattwise`` command, and bad arguments refused with exit 2."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from tests.influxd import InfluxServer
from tests.optimizer.service.support import twin_lines
from wattwise.cli import main
from wattwise.optimizer.service.views import iso
from wattwise.optimizer.store import InfluxStore

H100 = "NVIDIA H100 80GB HBM3"
# The twin's data is from 2023: windows long enough to reach it from today.
WINDOW = "[models]\nwindow_s = 1e9\nevery_s = 10\n"


@pytest.fixture
def embedded_config(twin_data: tuple[Path, int], tmp_path: Path) -> Path:
    store = tmp_path / "wattwise.sqlite"
    shutil.copy(twin_data[0], store)
    path = tmp_path / "optimizer.toml"
    path.write_text(f'[store]\nkind = "embedded"\nembedded_path = "{store}"\n{WINDOW}')
    return path


@pytest.fixture(scope="module")
def influx_config(influxd: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = f"backtest_{uuid.uuid4().hex[:8]}"
    influxd.create_database(database)
    batches, clock = twin_lines()
    store = InfluxStore(influxd.url, database=database, clock=clock)
    try:
        for batch in batches:
            store.write(batch)
    finally:
        store.close()
    path = tmp_path_factory.mktemp("influx") / "optimizer.toml"
    path.write_text(f'[store]\nurl = "{influxd.url}"\ndatabase = "{database}"\n{WINDOW}')
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["models", "backtest", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> dict[str, object]:
    code, out, err = _run(capsys, "--config", str(config), "--json", *args)
    assert code == 0, err
    document: dict[str, object] = json.loads(out)
    return document


def _power(document: dict[str, object]) -> dict[str, object]:
    models = document["models"]
    assert isinstance(models, list) and len(models) == 1
    model: dict[str, object] = models[0]
    return model


def test_backtest_json_scores_the_last_fifth_per_gpu_model_and_job(
    capsys: pytest.CaptureFixture[str], embedded_config: Path
) -> None:
    model = _power(_json(capsys, embedded_config))
    assert (model["kind"], model["gpu_model"]) == ("power", H100)
    samples, trained = model["samples"], model["train_samples"]
    assert isinstance(samples, int) and isinstance(trained, int)
    # 32 GPUs × 72 buckets of 10 s; the last 20 % of the 710 s span is 15 buckets.
    assert (samples, trained) == (32 * 15, 32 * 57)
    mape, mae = model["mape_pct"], model["mae_w"]
    assert isinstance(mape, float) and isinstance(mae, float)
    assert 0.0 < mape < 5.0 and 0.0 < mae < 10.0
    assert model["workloads_by"] == "job"
    workloads = model["workloads"]
    assert isinstance(workloads, list)
    assert sum(w["samples"] for w in workloads) == samples
    assert "(no job)" in {w["workload"] for w in workloads}
    assert any(w["workload"].startswith("sim-") for w in workloads)
    baselines = model["baselines"]
    assert isinstance(baselines, dict) and baselines.keys() == {"util_only", "boosting"}


def test_split_time_and_bucket_size_change_what_is_scored(
    capsys: pytest.CaptureFixture[str], embedded_config: Path, twin_data: tuple[Path, int]
) -> None:
    end_s = twin_data[1] // 10**9
    split = iso((end_s - 120) * 10**9)
    document = _json(capsys, embedded_config, "--split", split, "--every", "60")
    assert (document["split"], document["every_s"]) == (split, 60)
    model = _power(document)
    # Minute buckets starting at or after the split: end − 120 s, end − 60 s and the one
    # starting at the end, which holds the last reading.
    assert model["samples"] == 32 * 3


def test_table_names_the_split_and_the_jobs(
    capsys: pytest.CaptureFixture[str], embedded_config: Path
) -> None:
    code, out, err = _run(capsys, "--config", str(embedded_config), "--holdout", "50%")
    assert code == 0, err
    assert out.startswith("fitted before 2023-")
    assert "per job" in out and "(no job)" in out
    # Regression: nine columns cut "util_only %" and wrapped the GPU's name a word a line.
    assert all(len(line) <= 80 for line in out.splitlines() if "│" in line)
    assert "…" not in out.replace("… ", "")  # "… N more (--json lists all)" is not a cut
    assert "NVIDIA H100 80GB HBM3: baselines' MAPE %: util_only " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "yesterday"], "--split: 'yesterday' is not an ISO 8601 time"),
        (["--split", "2020-01-01T00:00:00Z"], "--split: 2020-01-01T00:00:00Z is outside the data"),
        (["--split", "1700000000"], "is outside the data: the data runs from 2023-11-14T22:14:10Z"),
        (["--holdout", "0%"], "--holdout: '0%' is outside 0..100 %"),
        (["--holdout", "120%"], "--holdout: '120%' is outside 0..100 %"),
        (["--holdout", "a fifth"], "--holdout: 'a fifth' is not a percentage"),
        (["--split", "1700000500", "--holdout", "20%"], "not both"),
        (["--every", "0"], "--every"),
    ],
    ids=["split-words", "split-before", "split-at-first", "holdout-0", "holdout-120",
         "holdout-words", "both", "every-0"],
)  # fmt: skip
def test_bad_arguments_exit_2_saying_what_is_wrong(
    capsys: pytest.CaptureFixture[str], embedded_config: Path, args: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "--config", str(embedded_config), *args)
    assert code == 2
    assert message in " ".join(err.split())
    assert out == ""


def test_an_empty_window_is_an_error_not_a_score(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "optimizer.toml"
    config.write_text(
        f'[store]\nkind = "embedded"\nembedded_path = "{tmp_path / "empty.sqlite"}"\n{WINDOW}'
    )
    code, out, err = _run(capsys, "--config", str(config), "--json")
    assert code == 1 and "no GPU power in the window" in err and out == ""


def test_influxd_and_the_embedded_store_give_the_same_backtest(
    capsys: pytest.CaptureFixture[str], embedded_config: Path, influx_config: Path
) -> None:
    from_influx = _json(capsys, influx_config)
    from_embedded = _json(capsys, embedded_config)
    assert from_influx["split"] == from_embedded["split"]
    influx_model, embedded_model = _power(from_influx), _power(from_embedded)
    for key in ("samples", "train_samples", "workloads_by"):
        assert influx_model[key] == embedded_model[key]
    for key in ("mape_pct", "mae_w"):
        assert influx_model[key] == pytest.approx(embedded_model[key], rel=1e-6)
