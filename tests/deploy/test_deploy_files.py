"""deploy/ is checked by validators, not run (no Docker engine or cluster here):

- yamllint over every YAML file (deploy/.yamllint.yaml);
- compose.yaml against the compose-spec JSON schema shipped in check-jsonschema;
- every Kubernetes manifest against the API's schemas (kubernetes-validate, strict);
- the NATS Helm values against deploy/k8s/nats-values.schema.json;
- nats.conf parsed by the very nats-server we test with (`nats-server -t`);
- and the properties the issue asks for: probes, grace periods, PDBs, secrets, start order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from ops.stack import SERVICES as STACK_SERVICES

# The console's compose service and Kubernetes objects are not written yet.
SERVICES = tuple(s for s in STACK_SERVICES if s != "console")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
NOT_RESOURCES = {"kustomization.yaml", "nats-values.yaml"}
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name not in NOT_RESOURCES)
KUBERNETES = "1.33"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources(kind: str) -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in documents(p) if d["kind"] == kind]


def test_every_yaml_file_passes_yamllint() -> None:
    config = YamlLintConfig(file=str(DEPLOY / ".yamllint.yaml"))
    problems = [
        f"{path.relative_to(DEPLOY)}:{p.line}: {p.desc}"
        for path in sorted(DEPLOY.rglob("*.yaml"))
        for p in linter.run(path.read_text(), config, str(path))
    ]
    assert problems == []


def test_compose_file_matches_the_compose_spec_schema() -> None:
    compose = str(DEPLOY / "compose.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", compose],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_api_schemas(path: Path) -> None:
    for document in documents(path):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    [kustomization] = documents(K8S / "kustomization.yaml")
    assert set(kustomization["resources"]) == {p.name for p in MANIFESTS} - {"secret.example.yaml"}


def test_nats_helm_values_give_three_zoned_jetstream_servers_with_fsync_always() -> None:
    import json

    schema = json.loads((K8S / "nats-values.schema.json").read_text())
    [values] = documents(K8S / "nats-values.yaml")
    jsonschema.validate(values, schema)


def test_nats_conf_parses_with_nats_server() -> None:
    binary = Path(sys.executable).parent / "nats-server"
    env = {**os.environ, "NATS_SERVER_NAME": "nats-1"}
    conf = DEPLOY / "nats" / "nats.conf"
    result = subprocess.run([str(binary), "-t", "-c", str(conf)], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0 and "is valid" in result.stdout + result.stderr, result.stderr
    assert "sync_interval: always" in conf.read_text()


def test_compose_starts_in_order_with_health_checks_and_replicas() -> None:
    [compose] = documents(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    for node in ("nats-1", "nats-2", "nats-3"):
        assert services[node]["image"].startswith("nats:") and "healthcheck" in services[node]
    assert not any("bitnami" in str(s.get("image", "")) for s in services.values())
    assert services["migrate"]["command"] == ["caseloop", "migrate"]
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["nats-1"]["condition"] == "service_healthy"
        assert service["environment"]["STREAM_REPLICAS"] == "3"
        assert len(service["environment"]["NATS_URL"].split(",")) == 3
        assert "healthcheck" in service and service["deploy"]["replicas"] >= 2
        assert not any(k in service["environment"] for k in ("JWT_SECRET", "PII_KEY", "DATABASE_URL"))


def test_each_deployment_is_probed_drained_budgeted_and_gets_secrets_from_secret_objects() -> None:
    deployments = {d["metadata"]["name"]: d for d in resources("Deployment")}
    assert set(deployments) == set(SERVICES)
    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for d in resources("PodDisruptionBudget")}
    assert budgets == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["terminationGracePeriodSeconds"] > 15 + 5, "longer than the drain (15 s) and the preStop pause"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert deployment["spec"]["replicas"] >= 2, name
        for variable in container["env"]:
            # Literal values only for the NATS user's name and files mounted from Secrets.
            assert "value" not in variable or variable["name"] == "NATS_USER" or variable["name"].endswith("_FILE")
    [job] = resources("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["caseloop", "migrate"]


def test_the_relay_signs_checkpoints_with_a_key_from_a_secret_in_compose_and_kubernetes() -> None:
    [compose] = documents(DEPLOY / "compose.yaml")
    relay = compose["services"]["relay"]
    path = relay["environment"]["CHECKPOINT_KEY_FILE"]
    assert path == "/run/secrets/checkpoint_key" and "checkpoint_key" in relay["secrets"]
    assert "checkpoint_key" in compose["secrets"]
    assert "checkpoint_key" in (DEPLOY / "make-dev-secrets.sh").read_text()
    # Every *_FILE the relay is given is a secret mounted into it.
    for name, value in relay["environment"].items():
        if name.endswith("_FILE"):
            assert value.removeprefix("/run/secrets/") in relay["secrets"], name

    [deployment] = [d for d in resources("Deployment") if d["metadata"]["name"] == "relay"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {v["name"]: v for v in container["env"]}
    key_path = Path(env["CHECKPOINT_KEY_FILE"]["value"])
    [mount] = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == key_path.parent]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] is True
    assert volume["secret"]["secretName"] == "caseloop-checkpoint"
    assert [item["path"] for item in volume["secret"]["items"]] == [key_path.name]
    examples = [d for d in documents(K8S / "secret.example.yaml") if d["kind"] == "Secret"]
    assert any(d["metadata"]["name"] == "caseloop-checkpoint" for d in examples)
