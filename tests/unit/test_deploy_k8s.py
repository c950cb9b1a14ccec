"""deploy/k8s, checked without a cluster.

Rules: the manifests are loaded with PyYAML; their numbers are checked against the prod.yaml
the ConfigMap carries, and that prod.yaml against configs/prod.yaml. The image they run is
the one tests/unit/test_deploy_files.py checks (its user, its config path).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from serve.supervisor.config_values import parse_size
from serve.supervisor.fleet import STOP_MARGIN_S
from tests.conftest import ROOT
from tests.unit.test_deploy_files import CONFIG_PATH, HEALTH_PORT, dockerfile, port_of, prod_config

K8S_DIR = ROOT / "deploy" / "k8s"
# Headroom for the master process in the pod's memory limit (it holds no app state).
MASTER_OVERHEAD_BYTES = 128 * 2**20
# Keys where the ConfigMap's prod.yaml may differ from configs/prod.yaml: metrics must
# listen on the pod IP, which the kubelet probes.
K8S_OVERRIDES = frozenset({"metrics"})


def manifests() -> dict[str, dict[str, Any]]:
    """Every object in deploy/k8s by kind (each kind appears once)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in by_kind, f"{document['kind']} twice"
            by_kind[document["kind"]] = document
    return by_kind


def pod_spec() -> Any:
    return manifests()["Deployment"]["spec"]["template"]["spec"]


def container() -> Any:
    return only_named(pod_spec()["containers"], "serve")


def only_named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [item for item in items if item["name"] == name]
    assert len(found) == 1, f"{len(found)} entries named {name!r}"
    return found[0]


def k8s_config() -> Any:
    return yaml.safe_load(manifests()["ConfigMap"]["data"]["prod.yaml"])


def probe_port(probe: Any) -> Any:
    """The container port an httpGet probe targets (a number, or a port's name)."""
    port = probe["httpGet"]["port"]
    return (
        port if isinstance(port, int) else only_named(container()["ports"], port)["containerPort"]
    )


_QUANTITY = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ('3Gi', '500m', 4) as a number (bytes or cores)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|K|M|G)?", str(value))
    assert match, f"not a quantity: {value!r}"
    number, suffix = float(match.group(1)), match.group(2) or ""
    return number / 1000 if suffix == "m" else number * _QUANTITY[suffix]


def test_configmap_is_configs_prod_yaml_with_k8s_overrides() -> None:
    prod, k8s = prod_config(), k8s_config()
    assert {key: prod[key] for key in prod.keys() - K8S_OVERRIDES} == {
        key: k8s[key] for key in k8s.keys() - K8S_OVERRIDES
    }


def test_configmap_prod_yaml_passes_serve_check(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text(manifests()["ConfigMap"]["data"]["prod.yaml"])
    result = subprocess.run(
        [sys.executable, "-m", "serve.supervisor", "check", "-c", str(path)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SERVE_")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_configs_prod_yaml_enables_the_metrics_the_healthcheck_needs() -> None:
    assert port_of(prod_config()["metrics"]["bind"]) == HEALTH_PORT


def test_probes_hit_health_endpoints_on_the_metrics_port() -> None:
    serve, metrics_port = container(), port_of(k8s_config()["metrics"]["bind"])
    assert serve["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Started means serving: /healthz is 200 before any worker is ready.
    assert serve["startupProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert probe_port(serve[kind]) == metrics_port, kind
    startup = serve["startupProbe"]
    window = startup["periodSeconds"] * startup["failureThreshold"]
    assert window >= k8s_config()["boot_timeout"]
    assert only_named(serve["ports"], "http")["containerPort"] == port_of(k8s_config()["bind"])


def test_grace_period_covers_prestop_delay_and_drain() -> None:
    config, serve = k8s_config(), container()
    command = serve["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    # The grace period starts before preStop; serve then waits shutdown_delay, drains for
    # graceful_timeout and gives lifespan shutdown STOP_MARGIN_S before its SIGKILL.
    budget = int(command[1]) + config.get("shutdown_delay", 0)
    budget += config["graceful_timeout"] + STOP_MARGIN_S
    assert pod_spec()["terminationGracePeriodSeconds"] > budget


def test_resources_fit_the_workers() -> None:
    config, resources = k8s_config(), container()["resources"]
    assert resources["requests"] == resources["limits"], "not Guaranteed QoS"
    assert quantity(resources["limits"]["cpu"]) == config["workers"]
    # One worker more than configured: a worker over max_worker_memory drains next to its
    # replacement.
    peak = (config["workers"] + 1) * parse_size(config["max_worker_memory"])
    assert quantity(resources["limits"]["memory"]) >= peak + MASTER_OVERHEAD_BYTES


def test_pod_runs_as_the_image_user_on_a_read_only_root() -> None:
    pod, serve = pod_spec(), container()
    uid = [i.args for i in dockerfile() if i.keyword == "USER"][-1].partition(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert serve["securityContext"]["readOnlyRootFilesystem"] is True
    assert serve["securityContext"]["allowPrivilegeEscalation"] is False
    assert serve["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Kubernetes would set SERVE_SERVICE_HOST and friends, inside serve's SERVE_* namespace.
    assert pod["enableServiceLinks"] is False


def test_pod_reads_the_configmap_at_the_image_config_path() -> None:
    pod, serve = pod_spec(), container()
    assert serve.get("args", ["-c", CONFIG_PATH]) == ["-c", CONFIG_PATH]
    config_dir, _, file_name = CONFIG_PATH.rpartition("/")
    mount = next(m for m in serve["volumeMounts"] if m["mountPath"] == config_dir)
    volume = only_named(pod["volumes"], mount["name"])
    assert volume["configMap"]["name"] == manifests()["ConfigMap"]["metadata"]["name"]
    assert {"key": "prod.yaml", "path": file_name} in volume["configMap"]["items"]


def test_service_hpa_and_pdb_point_at_the_deployment() -> None:
    objects = manifests()
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0
    service = objects["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert {port["targetPort"] for port in service["ports"]} <= {"http"}
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= 2
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
