"""The deployment files say what the code needs: every variable it reads is in .env.example,
beat runs once, the probes hit the health paths, compose starts things in order.

Their schemas are checked by `make deploy-check` (deploy/check.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The code that runs in a deployment (and `make run`); deploy/check.py is a CI tool.
SOURCES = [
    path
    for folder in ("config", "accounts", "registry", "workflows", "webhooks")
    for path in (ROOT / folder).rglob("*.py")
    if "migrations" not in path.parts
] + [ROOT / "deploy" / "gunicorn.conf.py", ROOT / "deploy" / "run.py", ROOT / "manage.py"]
READ = re.compile(
    r"""(?:os\.environ\.get|os\.environ\[|os\.getenv|env_bool|env_list|env_secret_list|env_secret)"""
    r"""\(?\s*["']([A-Z][A-Z0-9_]*)["']"""
)
SECRET_READ = re.compile(r"""env_secret(?:_list)?\(\s*["']([A-Z][A-Z0-9_]*)["']""")
# Variables only docker compose reads (deploy/docker-compose.yml).
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "MODELGATE_IMAGE", "MODELGATE_PORT"}
# Set by the code for itself, not by an operator (deploy/gunicorn.conf.py).
INTERNAL = {"MODELGATE_METRICS_DIR_MADE"}


def names_read(pattern: re.Pattern[str]) -> set[str]:
    return {name for path in SOURCES for name in pattern.findall(path.read_text())}


def names_listed() -> set[str]:
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def manifests() -> dict[tuple[str, str], dict]:
    found = {}
    for path in KUBERNETES.glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document and path.name != "kustomization.yaml":
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


def test_env_example_lists_every_variable_the_code_reads():
    read = names_read(READ)

    assert {"SECRET_KEY", "DATABASE_URL", "MODELGATE_WEBHOOK_SECRET_KEY"} <= read  # the scan works
    assert sorted(read - INTERNAL - names_listed()) == []
    assert sorted(names_listed() - read - COMPOSE_ONLY) == []


def test_every_secret_can_come_from_a_file():
    secrets = names_read(SECRET_READ)

    assert secrets == {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "MODELGATE_ADMIN_PASSWORD",
        "MODELGATE_TOKEN_PEPPER",
        "MODELGATE_CHECKPOINT_KEY",
        "MODELGATE_CHECKPOINT_KEY_FALLBACKS",
        "MODELGATE_WEBHOOK_SECRET_KEY",
        "MODELGATE_WEBHOOK_SECRET_KEY_FALLBACKS",
        "MODELGATE_METRICS_TOKEN",
    }


def test_the_kubernetes_secret_reaches_the_pods_as_files():
    found = manifests()
    secret_keys = set(found[("Secret", "modelgate-secrets")]["stringData"])
    config = found[("ConfigMap", "modelgate-config")]["data"]

    assert {name.removesuffix("_FILE") for name in config if name.endswith("_FILE")} == secret_keys
    for name in secret_keys:
        assert config[f"{name}_FILE"] == f"/run/secrets/modelgate/{name}"
        assert name not in config


def test_beat_runs_exactly_once():
    beat = manifests()[("Deployment", "modelgate-beat")]["spec"]

    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    assert "modelgate-beat" not in {
        hpa["spec"]["scaleTargetRef"]["name"]
        for (kind, _), hpa in manifests().items()
        if kind == "HorizontalPodAutoscaler"
    }


def test_web_probes_and_autoscaling():
    found = manifests()
    web = found[("Deployment", "modelgate-web")]["spec"]
    [container] = web["template"]["spec"]["containers"]
    hpa = found[("HorizontalPodAutoscaler", "modelgate-web")]["spec"]

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["httpHeaders"] == [
            {"name": "Host", "value": "localhost"}
        ]
    assert "localhost" in found[("ConfigMap", "modelgate-config")]["data"]["ALLOWED_HOSTS"]
    assert "replicas" not in web  # the autoscaler owns it
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "modelgate-web",
    }
    assert hpa["minReplicas"] == 2


@pytest.mark.parametrize("name", ["modelgate-web", "modelgate-worker", "modelgate-beat"])
def test_workloads_are_limited_and_unprivileged(name):
    pod = manifests()[("Deployment", name)]["spec"]["template"]["spec"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-migrations"]
    for container in pod["containers"] + pod["initContainers"]:
        assert set(container["resources"]) == {"requests", "limits"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_compose_starts_the_services_after_the_migration():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]

    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat"}
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["migrate"]["restart"] == "no"
    assert "/readyz" in services["web"]["healthcheck"]["test"][-1]
    assert set(compose["volumes"]) == {"postgres-data", "redis-data"}
    for service in services.values():
        for dependency in service.get("depends_on", {}):
            assert dependency in services
