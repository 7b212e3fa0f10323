"""deploy/: run the static validations, then check the manifests against the port contract.

No Docker engine or cluster is needed: compose is checked with `docker-compose config`,
Kubernetes with `kubectl kustomize` + kubernetes-validate, the Dockerfile with hadolint
(all inside deploy/validate.sh); the assertions below parse the rendered YAML/JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())

# The contract: service -> (gRPC port, Prometheus metrics port).
SERVICES: dict[str, tuple[int, int]] = {
    "tokenizer": (50051, 9101),
    "inference": (50052, 9102),
    "embedding": (50053, 9103),
    "retrieval": (50054, 9104),
    "agent": (50055, 9105),
    "evaluation": (50056, 9106),
    "finetune": (50057, 9107),
}
GATEWAY_PORT = 8080
STATEFUL = {"tokenizer", "retrieval", "finetune"}  # data on a PersistentVolumeClaim
AUTOSCALED = {"inference", "embedding"}
APP_UID = 10001


def _venv() -> Path:
    if "VENV" in os.environ:
        return Path(os.environ["VENV"]).resolve()
    if (Path(sys.prefix) / "bin" / "hadolint").exists():
        return Path(sys.prefix)
    return ROOT / ".venv"


VENV = _venv()


def health_name(service: str) -> str:
    """Full gRPC service name the probes ask for, e.g. genai.tokenizer.v1.TokenizerService."""
    return f"genai.{service}.v1.{service.capitalize()}Service"


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, **kwargs)


def _env_map(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[tuple[str, str], dict[str, Any]]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required (kubectl kustomize renders deploy/k8s)"
    proc = _run([kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / request.param)])
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return request.param, {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = VENV / "bin" / "docker-compose"
    proc = _run(
        [str(binary), "-f", str(DEPLOY / "compose" / "compose.yaml"), "config", "--format", "json"],
        env={k: v for k, v in os.environ.items() if not k.startswith(("GENAI_", "QDRANT_IMAGE", "PHOENIX_IMAGE"))},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_validate_script_passes() -> None:
    proc = _run(["bash", str(DEPLOY / "validate.sh")], env={**os.environ, "VENV": str(VENV)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checks passed" in proc.stdout
    for what in ("compose config -q", "kubernetes-validate --strict", "hadolint"):
        assert what in proc.stdout, f"validate.sh did not run {what!r}:\n{proc.stdout}"
    for overlay in OVERLAYS:
        assert f"overlays/{overlay}" in proc.stdout


def test_every_workload_is_non_root_and_hardened(rendered) -> None:
    overlay, objs = rendered
    workloads = [o for (kind, _), o in objs.items() if kind in ("Deployment", "StatefulSet")]
    assert {o["metadata"]["name"] for o in workloads} >= {*SERVICES, "gateway", "qdrant"}
    for obj in workloads:
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, where
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where}: resources.{kind}"
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: read-only root needs a writable /tmp"


def test_grpc_services_match_the_port_table(rendered) -> None:
    overlay, objs = rendered
    for name, (port, metrics) in SERVICES.items():
        where = f"{overlay}: {name}"
        dep = objs[("Deployment", name)]
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == APP_UID, where
        (c,) = pod["containers"]
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": port, "metrics": metrics}, where

        for probe in ("startupProbe", "readinessProbe"):
            assert c[probe]["grpc"] == {"port": port, "service": health_name(name)}, f"{where}: {probe}"
        assert c["livenessProbe"]["grpc"]["port"] == port, where
        assert c["livenessProbe"]["grpc"].get("service", "") == "", f"{where}: liveness checks the server"
        # Model loading takes time: at least 5 minutes before the startup probe gives up.
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, where

        env = _env_map(c)
        prefix = f"GENAI_{name.upper()}_"
        assert env[prefix + "HOST"] == "0.0.0.0", where
        assert env[prefix + "PORT"] == str(port), where
        assert env[prefix + "METRICS_PORT"] == str(metrics), where
        assert env[prefix + "DATA_DIR"] == "/data" and env[prefix + "CACHE_DIR"] == "/cache", where
        assert env["OTEL_SERVICE_NAME"] == f"genai-{name}", where
        (shared,) = [e["configMapRef"]["name"] for e in c["envFrom"]]
        assert ("ConfigMap", shared) in objs, f"{where}: envFrom {shared} is not rendered"

        svc = objs[("Service", name)]
        assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"grpc": port, "metrics": metrics}, where
        assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"], where


def test_gateway_wiring(rendered) -> None:
    overlay, objs = rendered
    (c,) = objs[("Deployment", "gateway")]["spec"]["template"]["spec"]["containers"]
    assert c["ports"] == [{"name": "http", "containerPort": GATEWAY_PORT}], overlay
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", overlay
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", overlay
    env = _env_map(c)
    assert env["GENAI_GATEWAY_HOST"] == "0.0.0.0" and env["GENAI_GATEWAY_PORT"] == str(GATEWAY_PORT)
    for name, (port, _) in SERVICES.items():
        target = env[f"GENAI_GATEWAY_{name.upper()}_TARGET"]
        assert target == f"{name}:{port}", overlay
        assert ("Service", target.split(":")[0]) in objs, f"{overlay}: no Service for {target}"
    retrieval_env = _env_map(objs[("Deployment", "retrieval")]["spec"]["template"]["spec"]["containers"][0])
    assert retrieval_env["GENAI_RETRIEVAL_QDRANT_URL"] == "http://qdrant:6333"
    assert ("Service", "qdrant") in objs and ("StatefulSet", "qdrant") in objs


def test_persistent_data_and_autoscaling(rendered) -> None:
    overlay, objs = rendered
    for name in STATEFUL:
        dep = objs[("Deployment", name)]
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
        assert ("PersistentVolumeClaim", claim) in objs, f"{overlay}: {name} claims {claim}"
        assert dep["spec"]["strategy"]["type"] == "Recreate", f"{overlay}: {name} uses a RWO volume"
        assert dep["spec"]["replicas"] == 1, f"{overlay}: {name} uses a RWO volume"

    hpas = {name: o for (kind, name), o in objs.items() if kind == "HorizontalPodAutoscaler"}
    if overlay == "dev":
        assert hpas == {}, "dev runs one replica of everything"
        assert all(objs[("Deployment", n)]["spec"]["replicas"] == 1 for n in [*SERVICES, "gateway"])
        return
    assert set(hpas) == AUTOSCALED, overlay
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) == ("Deployment", name) and ("Deployment", name) in objs
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in objs[("Deployment", name)]["spec"], f"the HPA owns {name}'s replicas"


def test_compose_matches_the_port_table(compose) -> None:
    services = compose["services"]
    assert compose["name"] == "genai"
    assert set(services) == {*SERVICES, "gateway", "qdrant", "phoenix"}
    for name, (port, metrics) in SERVICES.items():
        svc = services[name]
        env = svc["environment"]
        prefix = f"GENAI_{name.upper()}_"
        assert svc["build"]["args"] == {"SERVICE": name}
        assert svc["build"]["dockerfile"] == "deploy/docker/service.Dockerfile"
        assert Path(svc["build"]["context"]).resolve() == ROOT
        assert env[prefix + "HOST"] == "0.0.0.0"
        assert env[prefix + "PORT"] == str(port)
        assert env[prefix + "METRICS_PORT"] == str(metrics)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://phoenix:4317"
        assert {(p["target"], int(p["published"])) for p in svc["ports"]} == {(port, port), (metrics, metrics)}
        assert svc["healthcheck"]["test"] == [
            "CMD", "python", "-m", "genai_core.healthcheck", f"127.0.0.1:{port}"
        ], name
        data = [v for v in svc["volumes"] if v["target"] == env[prefix + "DATA_DIR"]]
        assert data and data[0]["type"] == "volume" and data[0]["source"] in compose["volumes"], name

    gateway = services["gateway"]
    for name, (port, _) in SERVICES.items():
        assert gateway["environment"][f"GENAI_GATEWAY_{name.upper()}_TARGET"] == f"{name}:{port}"
        assert gateway["depends_on"][name]["condition"] == "service_healthy"
    assert [(p["target"], int(p["published"])) for p in gateway["ports"]] == [(GATEWAY_PORT, GATEWAY_PORT)]
    assert services["retrieval"]["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert services["retrieval"]["environment"]["GENAI_RETRIEVAL_QDRANT_URL"] == "http://qdrant:6333"
    assert {p["target"] for p in services["phoenix"]["ports"]} == {4317, 6006}


def _dockerfile_stages() -> dict[str, str]:
    text = (DEPLOY / "docker" / "service.Dockerfile").read_text()
    stages: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=FROM )", text):
        m = re.match(r"FROM \S+ AS (\S+)", block)
        if m:
            stages[m.group(1)] = block
    return stages


def test_dockerfile_has_one_stage_per_service() -> None:
    stages = _dockerfile_stages()
    table = {**{n: (p, m) for n, (p, m) in SERVICES.items()}, "gateway": (GATEWAY_PORT, None)}
    for name, (port, metrics) in table.items():
        src = "gateway/" if name == "gateway" else f"services/{name}/"
        assert f"COPY {src} /" in stages[f"src-{name}"], name
        block = stages[f"svc-{name}"]
        expose = re.search(r"(?m)^EXPOSE (.+)$", block).group(1).split()
        assert expose == [str(port)] + ([str(metrics)] if metrics else []), name
        assert f"GENAI_{name.upper()}_HOST=0.0.0.0" in block, name
        assert f"GENAI_{name.upper()}_PORT={port}" in block, name
        assert "HEALTHCHECK" in block, name
        assert f'CMD ["python", "-m", "genai_{name}"]' in block, name
    assert re.search(rf"(?m)^USER {APP_UID}:{APP_UID}$", stages["runtime"])
    assert "torch==${TORCH_VERSION}" in stages["builder"]
    assert "pip install -c requirements/constraints.txt ./libs/core ./libs/sparse ./service" in stages["builder"]


def test_probe_names_match_the_protos() -> None:
    """Wherever proto/genai/<svc>/v1 exists, the probed health name must be a declared service."""
    for name in SERVICES:
        declared = set()
        for proto in (ROOT / "proto" / "genai" / name / "v1").glob("*.proto"):
            text = proto.read_text()
            package = re.search(r"(?m)^package\s+([\w.]+)\s*;", text)
            for service in re.findall(r"(?m)^service\s+(\w+)", text):
                declared.add(f"{package.group(1)}.{service}" if package else service)
        if declared:
            assert health_name(name) in declared, f"{name}: probes ask for {health_name(name)}, protos declare {declared}"
