from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from wattwise.errors import ConfigError
from wattwise.optimizer.models.sweeps import load_sweeps

PUBLIC = REPO / "tests" / "data" / "public"


def test_zeus_power_traces_become_one_sweep_per_training_job() -> None:
    sweeps = load_sweeps(PUBLIC / "zeus-nsdi23" / "summary_power_v100.csv")
    assert len(sweeps) == 68
    first = sweeps[0]
    assert first.gpu.max_limit_w == 250.0
    assert first.settings[0] == 250.0 and np.all(np.diff(first.settings) < 0)
    assert first.throughput_rel[0] == 1.0 and first.energy_rel[0] == 1.0
    assert first.family == "shufflenetv2"


def test_perseus_local_sweeps_keep_every_stage_limit() -> None:
    sweeps = load_sweeps(PUBLIC / "perseus-sosp24" / "A100_pcie_zeus_local.csv")
    gpt = [s for s in sweeps if s.family == "gpt3-xl"]
    assert len(gpt) == 2  # its heaviest stage was swept twice, stage 2 and stage 3
    assert all(s.stage_limits_w is not None and s.stage_limits_w.shape[1] == 4 for s in gpt)
    assert all(s.gpus == 4 for s in sweeps)


def test_stage_profiles_are_clock_sweeps_per_pass() -> None:
    sweeps = load_sweeps(PUBLIC / "perseus-sosp24" / "stage_profile_gpt3-175b_a40_bf16.csv")
    assert {s.kind for s in sweeps} == {"clock"}
    assert len(sweeps) == 16
    assert sweeps[0].settings[0] == 1740.0


def test_a_file_that_does_not_name_its_gpu_is_refused(tmp_path: Path) -> None:
    source = PUBLIC / "zeus-nsdi23" / "summary_power_v100.csv"
    (tmp_path / "sweep.csv").write_text(source.read_text())
    with pytest.raises(ConfigError, match="says its GPU"):
        load_sweeps(tmp_path / "sweep.csv")


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "v100_other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="Zeus power trace"):
        load_sweeps(tmp_path / "v100_other.csv")
