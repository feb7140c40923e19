"""deploy/k8s: every manifest against Kubernetes' own schemas, and the fields that matter."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from tests.deploy.systemd_tools import REPO
from wattwise.agent.config import load_config
from wattwise.optimizer.service.settings import load_optimizer_config

K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resource(kind: str, name: str) -> dict[str, Any]:
    for path in MANIFESTS:
        for doc in documents(path):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name}")


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schema(path: Path) -> None:
    for doc in documents(path):
        validate(doc)


def test_schema_check_catches_a_misspelled_field() -> None:
    daemonset = copy.deepcopy(resource("DaemonSet", "wattwise-agent"))
    daemonset["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(daemonset)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_agent_sees_host_processes_and_gpus_only_on_gpu_nodes() -> None:
    pod = resource("DaemonSet", "wattwise-agent")["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    (agent,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    assert "WATTWISE_AGENT_AGENT__HOST" in env


def test_agent_runs_unprivileged_with_the_wal_on_the_host() -> None:
    pod = resource("DaemonSet", "wattwise-agent")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (agent,) = pod["containers"]
    context = agent["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in context
    volumes = {v["name"]: v for v in pod["volumes"]}
    wal_mount = next(m for m in agent["volumeMounts"] if m["name"] == "wal")
    assert volumes["wal"]["hostPath"]["path"] == wal_mount["mountPath"] == "/var/lib/wattwise"
    assert agent["resources"]["limits"]["memory"] == "1Gi"


def test_agent_config_is_accepted_and_its_secret_is_mounted(tmp_path: Path) -> None:
    configmap = resource("ConfigMap", "wattwise-agent")
    config_file = tmp_path / "agent.toml"
    config_file.write_text(configmap["data"]["agent.toml"])
    config = load_config(
        config_file, None, {"WATTWISE_AGENT_AGENT__HOST": "gpu-a01"}, require_file=True
    )
    assert config.agent.host == "gpu-a01"
    assert config.wal.dir == Path("/var/lib/wattwise/wal")
    pod = resource("DaemonSet", "wattwise-agent")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert config.influx.token_file == Path(mounts["influx-token"]) / "influx-token"


def test_optimizer_service_reaches_the_deployments_port() -> None:
    deployment = resource("Deployment", "wattwise-optimizer")
    service = resource("Service", "wattwise-optimizer")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_optimizer_keeps_models_on_a_claim_and_secrets_in_secrets() -> None:
    spec = resource("Deployment", "wattwise-optimizer")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert resource("PersistentVolumeClaim", claim)
    secret_names = {s["secret"]["name"] for s in volumes["secrets"]["projected"]["sources"]}
    assert secret_names == {"wattwise-influx", "wattwise-optimizer"}
    configmap_text = resource("ConfigMap", "wattwise-optimizer")["data"]["optimizer.toml"]
    assert 'token_file = "/run/secrets/wattwise/influx-token"' in configmap_text
    assert 'registry_dir = "/var/lib/wattwise-optimizer/models"' in configmap_text


def test_optimizer_config_is_accepted_and_probed_where_it_answers(tmp_path: Path) -> None:
    config_file = tmp_path / "optimizer.toml"
    config_file.write_text(resource("ConfigMap", "wattwise-optimizer")["data"]["optimizer.toml"])
    config = load_optimizer_config(config_file, None, {}, require_file=True)
    (container,) = resource("Deployment", "wattwise-optimizer")["spec"]["template"]["spec"][
        "containers"
    ]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert config.api.port == port
    assert config.api.host == "0.0.0.0"
    # The GET routes the API declares; /healthz is one that needs no token.
    get_routes = re.findall(
        r'@app\.get\("([^"]+)"', (REPO / "optimizer/service/app.py").read_text()
    )
    assert container["readinessProbe"]["httpGet"]["path"] in get_routes
    assert container["livenessProbe"]["httpGet"]["path"] in get_routes


def _dockerfile_stages() -> dict[str, str]:
    """Each ``FROM … AS name`` stage of deploy/Dockerfile and its instructions."""
    text = (REPO / "deploy" / "Dockerfile").read_text()
    parts = re.split(r"^FROM \S+ AS (\S+)\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_daemonset_runs_the_image_of_the_agent_alone() -> None:
    # Regression: one image with every dependency (~330 MB) went onto every GPU node.
    pod = resource("DaemonSet", "wattwise-agent")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].split(":")[0] == "wattwise-agent"
    stages = _dockerfile_stages()
    installs = re.findall(r"pip install [^\n]*", stages["agent"])
    assert installs == ["pip install --no-cache-dir /dist/wattwise-*.whl \\"]  # no extra
    assert "[optimizer]" in stages["optimizer"]
    optimizer = resource("Deployment", "wattwise-optimizer")["spec"]["template"]["spec"]
    assert optimizer["containers"][0]["image"].split(":")[0] == "wattwise-optimizer"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert {i["name"] for i in kustomization["images"]} == {"wattwise-agent", "wattwise-optimizer"}
