from pathlib import Path

import pytest

from wattwise.agent.config import load_config, require_store_target
from wattwise.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_flags_override_env_which_overrides_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[influx]\nurl = "http://file:8086"\ndatabase = "fromfile"\n'
        "[agent]\ngpu_interval_s = 5.0\nhost_interval_s = 20.0\n",
    )
    env = {
        "WATTWISE_AGENT_INFLUX__DATABASE": "fromenv",
        "WATTWISE_AGENT_AGENT__GPU_INTERVAL_S": "3",
    }
    config = load_config(path, {"agent.gpu_interval_s": 2.0, "influx.url": None}, env)
    assert config.agent.gpu_interval_s == 2.0  # flag beats env and file
    assert config.influx.database == "fromenv"  # env beats file
    assert config.agent.host_interval_s == 20.0  # file beats default
    assert config.influx.url == "http://file:8086"  # a None flag changes nothing


def test_nested_labels_from_file_and_env(tmp_path: Path) -> None:
    path = write(tmp_path, '[influx]\nurl = "http://x:8086"\n[agent.labels]\ncluster = "c1"\n')
    config = load_config(path, env={"WATTWISE_AGENT_AGENT__LABELS__ZONE": "z2"})
    assert config.agent.labels == {"cluster": "c1", "zone": "z2"}


def test_defaults_are_the_documented_ones() -> None:
    config = load_config(None, {"store.kind": "embedded"})
    assert config.agent.gpu_interval_s == 1.0
    assert config.agent.host_interval_s == 10.0
    assert config.wal.sync == "interval"
    assert config.metrics.prometheus_port == 0


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ('[influx]\nurl = "http://x"\n[agent]\ngpu_interval_s = 0\n', "agent.gpu_interval_s", "0"),
        ('[influx]\nurl = "http://x"\n[agent]\nsource = "dcgm"\n', "agent.source", "'dcgm'"),
        ('[influx]\nurl = "http://x"\n[agent]\ncolour = "red"\n', "agent.colour", "'red'"),
        ('[influx]\nurl = "udp://x"\n', "influx.url", "'udp://x'"),
        ('[influx]\nurl = "http://x"\napi = "v2"\n', "influx.bucket", "''"),
        ('[wal]\nsync = "sometimes"\n', "wal.sync", "'sometimes'"),
    ],
)
def test_bad_value_error_names_key_value_and_what_is_allowed(
    tmp_path: Path, text: str, key: str, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith(f"{key}: {value} is not allowed; it must be ")
    assert len(info.value.allowed) > 3


def test_missing_influx_url_without_embedded_store_is_refused() -> None:
    config = load_config(None)  # probing needs no store
    with pytest.raises(ConfigError) as info:
        require_store_target(config)
    assert info.value.key == "influx.url"
    assert "embedded" in info.value.allowed


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[influx\nurl = 1")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "valid TOML" in str(info.value)


def test_missing_file_is_an_error_only_when_required(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert load_config(missing, {"store.kind": "embedded"}).store.kind == "embedded"
    with pytest.raises(ConfigError):
        load_config(missing, {"store.kind": "embedded"}, require_file=True)
