"""docker-compose.yml cannot run here (no Docker engine): check what it wires instead."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from planner_service.cli import main

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
THIRD_PARTY = ("redis", "prometheus", "grafana")  # official images, not hgq's


def test_every_required_service_exists() -> None:
    for name in ("redis", "planner", "worker-text", "worker-vision", "worker-audio", "flower"):
        assert name in SERVICES, name


def test_every_hgq_command_is_one_the_cli_really_has() -> None:
    runner = CliRunner()
    for name, svc in SERVICES.items():
        if name in ("prometheus", "grafana"):
            continue
        cmd = svc["command"]
        if cmd[0] == "hgq":
            result = runner.invoke(main, [*cmd[1:], "--help"])
            assert result.exit_code == 0, f"{name}: `{' '.join(cmd)}` is not a valid hgq command: {result.output}"
        elif cmd[0] == "celery":
            assert cmd[1:3] == ["-A", "workers.app"], name
            import importlib

            assert importlib.import_module("workers.app").app.main == "hgq"
        else:
            assert name == "redis" and cmd[0] == "redis-server"


def test_one_worker_service_per_pool_consumes_its_own_queue() -> None:
    queues = {name: svc["command"][-1] for name, svc in SERVICES.items()
              if name.startswith("worker-") and "profiles" not in svc}
    assert queues == {"worker-text": "text", "worker-vision": "vision", "worker-audio": "audio"}
    assert SERVICES["planner"]["command"] == ["hgq", "worker", "llm"]
    for name, svc in SERVICES.items():
        if name.startswith("worker-"):
            assert "container_name" not in svc and "ports" not in svc, f"{name} must be scalable with --scale"


def test_services_share_redis_and_flower_is_bound_to_loopback() -> None:
    for name, svc in SERVICES.items():
        if name not in THIRD_PARTY:
            assert svc["environment"]["REDIS_URL"] == "redis://redis:6379/0", name
    assert SERVICES["flower"]["ports"] == ["127.0.0.1:5555:5555"]


def test_prometheus_and_grafana_mount_the_monitoring_files() -> None:
    for svc in ("prometheus", "grafana"):
        for vol in SERVICES[svc]["volumes"]:
            src = vol.split(":", 1)[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{svc}: {src} does not exist"
    assert SERVICES["flower"]["command"] == ["hgq", "flower"]
    for name in ("planner", "worker-text", "worker-vision", "worker-audio"):
        assert SERVICES[name]["environment"]["HGQ_METRICS_PORT"] == "9808" and SERVICES[name]["expose"] == ["9808"]


def test_the_image_it_builds_installs_what_setup_installs() -> None:
    """docker-compose builds `.`: the Dockerfile must exist and install the same models as scripts/setup.sh."""
    import re

    assert COMPOSE["x-hgq"]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    setup = (ROOT / "scripts" / "setup.sh").read_text()

    def no_deps(text: str) -> set[str]:
        # pinned packages only: setup.sh also reinstalls its own llama-cpp-python build --no-deps
        return {pkg for line in re.findall(r"pip install[^\n]*--no-deps ([^\n]+)", text) for pkg in line.split()
                if "==" in pkg and not pkg.startswith('"')}

    assert no_deps(setup) and no_deps(dockerfile) == no_deps(setup)
    assert '".[models,llm]"' in dockerfile and '".[models,llm,test]"' in setup
    runtime_apt = {pkg for pkgs in re.findall(r"need_apt\+=\(([^)]*)\)", setup) for pkg in pkgs.split()}
    runtime_apt -= {"redis-server", "rabbitmq-server", "chromium", "chromium-driver"}  # own services; web page test
    assert runtime_apt and all(re.search(rf"\b{re.escape(pkg)}\b", dockerfile) for pkg in runtime_apt)
    # never the CUDA build, unless the GPU image asks for it
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile
    assert "torch==2.13.0 --index-url ${TORCH_INDEX}" in dockerfile
    assert "hgq prepare" in dockerfile


def test_every_service_has_a_healthcheck_and_starts_after_what_it_needs() -> None:
    for name, svc in SERVICES.items():
        if name in ("prometheus", "grafana"):
            continue
        check = svc.get("healthcheck") or COMPOSE["x-hgq"].get("healthcheck")
        assert check and check["test"][0] == "CMD", f"{name} has no healthcheck"
        if name != "redis":
            assert svc["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    assert SERVICES["planner"]["depends_on"]["llm"] == {"condition": "service_healthy"}
    # each hgq service's check probes the port its command serves
    probes = {"llm": "8080", "api": "8000", "flower": "5555", "worker-text": "9808", "planner": "9808"}
    for name, port in probes.items():
        test = (SERVICES[name].get("healthcheck") or COMPOSE["x-hgq"]["healthcheck"])["test"]
        assert f":{port}/" in " ".join(test), name


def test_redis_is_durable_and_not_published() -> None:
    redis = SERVICES["redis"]
    cmd = " ".join(redis["command"])
    assert "--appendonly yes" in cmd
    assert any(v.endswith(":/data") for v in redis["volumes"]) and "redis-data" in COMPOSE["volumes"]
    assert redis["restart"] == "unless-stopped" and "ports" not in redis


def test_the_image_is_multi_stage_non_root_and_installs_dependencies_before_the_code() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and " AS builder" in stages[0]
    runtime = dockerfile.rsplit(stages[1] + "\n", 1)[1]
    assert "USER hgq" in runtime and "build-essential" not in runtime
    assert dockerfile.index('pip install ".[models,llm]"') < dockerfile.index("COPY shared shared")
    assert "llama-server" in dockerfile  # the parallel LLM server, as make setup builds it


def test_the_gpu_profile_runs_a_vision_lane_on_one_gpu_with_the_gpu_models() -> None:
    from shared.custom_models import load_models_file

    gpu = SERVICES["worker-vision-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["image"] == "hgq:gpu"  # not started by a plain `up`
    assert gpu["build"]["args"]["TORCH_INDEX"].startswith("https://download.pytorch.org/whl/cu")
    assert gpu["command"] == ["hgq", "worker", "vision", "--lane", "gpu", "-c", "1"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    env = gpu["environment"]
    assert env["REDIS_URL"] == SERVICES["worker-vision"]["environment"]["REDIS_URL"] and env["HF_HUB_OFFLINE"] == "1"
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in gpu["volumes"])
    assert mounts["./examples/models-gpu.yaml"] == env["HGQ_MODELS_FILE"] and mounts["./models"] == env["HGQ_MODEL_DIR"]
    models = load_models_file(ROOT / "examples" / "models-gpu.yaml")
    assert {m.backend for m in models} == {"transformers", "diffusers"}
    assert {"text-to-video", "openpose-text-to-image", "canny-text-to-image", "image-to-text"} <= {m.task for m in models}


def test_the_k8s_gpu_lane_asks_for_a_gpu_and_scales_on_its_own_queue() -> None:
    from shared.settings import lane_queue

    docs = list(yaml.safe_load_all((ROOT / "monitoring" / "k8s" / "gpu-lane.yaml").read_text()))
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    spec = deploy["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["hgq", "worker", "vision", "--lane", "gpu", "-c", "1"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1" == container["resources"]["requests"]["nvidia.com/gpu"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["HGQ_MODEL_DIR"] == mounts["models"] and env["HGQ_MODELS_FILE"].startswith(mounts["models-file"])
    assert spec["terminationGracePeriodSeconds"] > int(env["HGQ_WORKER_SOFT_SHUTDOWN_S"])
    assert container["securityContext"]["runAsNonRoot"] is True
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    assert scaled["spec"]["triggers"][0]["metadata"]["listName"] == lane_queue("vision", "gpu")
    assert scaled["spec"]["minReplicaCount"] >= 1
    result = CliRunner().invoke(main, [*container["args"][1:], "--help"])
    assert result.exit_code == 0, result.output
