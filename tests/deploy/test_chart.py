"""The Helm chart lints, renders in every scenario, and renders what a platform engineer expects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helm import CHART, REPO, SCENARIOS, helm, manifests, render
from tests.deploy.tools import ToolUnavailable, envoy_binary

pytestmark = pytest.mark.usefixtures("helm_available")


def _find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(
        f"{kind}/{name} not rendered: {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )


def _kinds(docs: tuple[dict[str, Any], ...]) -> set[str]:
    return {f"{d['kind']}/{d['metadata']['name']}" for d in docs}


def _container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["name"] == name:
            return dict(container)
    raise AssertionError(f"no container {name}")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_passes(scenario: str) -> None:
    args = ["lint", str(CHART), "--strict"]
    for path in SCENARIOS[scenario]:
        args += ["-f", str(path)]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_template_renders(scenario: str) -> None:
    assert manifests(scenario)


def test_default_is_a_single_pod_evaluation_install() -> None:
    docs = manifests("default")
    serve = _find(docs, "Deployment", "gk-gatekeeper")
    assert serve["spec"]["replicas"] == 1
    assert not any(
        d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-worker") for d in docs
    )
    assert not any(d["kind"] in {"Secret", "HorizontalPodAutoscaler"} for d in docs)


def test_all_features_render_every_optional_resource() -> None:
    names = _kinds(manifests("all-features"))
    assert {
        "Deployment/gk-gatekeeper",
        "Deployment/gk-gatekeeper-worker",
        "Service/gk-gatekeeper",
        "ConfigMap/gk-gatekeeper-policy",
        "ConfigMap/gk-gatekeeper-ratelimit",
        "Secret/gk-gatekeeper",
        "HorizontalPodAutoscaler/gk-gatekeeper",
        "PodDisruptionBudget/gk-gatekeeper",
        "PodDisruptionBudget/gk-gatekeeper-worker",
        "ServiceMonitor/gk-gatekeeper",
        "NetworkPolicy/gk-gatekeeper",
        "NetworkPolicy/gk-gatekeeper-worker",
        "AuthorizationPolicy/gk-gatekeeper-ext-authz",
        "EnvoyFilter/gk-gatekeeper-ratelimit",
        "EnvoyFilter/gk-gatekeeper-access-log",
        "ServiceAccount/gk-gatekeeper",
    } <= names
    serve = _find(manifests("all-features"), "Deployment", "gk-gatekeeper")
    assert "replicas" not in serve["spec"]  # the HPA owns it


def test_service_names_the_three_ports() -> None:
    service = _find(manifests("default"), "Service", "gk-gatekeeper")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == 9191 and ports["grpc"]["appProtocol"] == "grpc"
    assert ports["http"]["port"] == 8080
    assert ports["authz-http"]["port"] == 9192
    assert "edge" not in ports


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_gatekeeper_pod_is_locked_down(scenario: str) -> None:
    for doc in manifests(scenario):
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        chart_containers = {"gatekeeper", "worker", "envoy", "redis"}
        for container in pod["containers"]:
            if container["name"] not in chart_containers:
                continue  # the user's own app in sidecar mode
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = {m["mountPath"] for m in container.get("volumeMounts", ())}
            assert "/tmp" in mounts or container["name"] == "redis"


def test_serve_probes_use_grpc_health_on_9191() -> None:
    serve = _container(_find(manifests("default"), "Deployment", "gk-gatekeeper"), "gatekeeper")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert serve[probe]["grpc"] == {"port": 9191}
    assert serve["args"][0] == "serve"
    env = {e["name"]: e.get("value") for e in serve["env"]}
    assert env["GATEKEEPER_SERVER_HOST"] == "0.0.0.0"
    assert env["GATEKEEPER_CONFIG"] == "/etc/gatekeeper/policy.yaml"


def test_http_probes_behind_a_toggle() -> None:
    serve = _container(
        _find(manifests("all-features"), "Deployment", "gk-gatekeeper"), "gatekeeper"
    )
    assert serve["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert serve["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_worker_has_no_ports_and_no_probes() -> None:
    worker = _container(
        _find(manifests("all-features"), "Deployment", "gk-gatekeeper-worker"), "worker"
    )
    assert worker["args"][0] == "worker"
    assert "ports" not in worker
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & worker.keys()


def test_credentials_come_from_the_secret() -> None:
    docs = manifests("all-features")
    secret = _find(docs, "Secret", "gk-gatekeeper")
    assert set(secret["stringData"]) == {
        "GATEKEEPER_REDIS_URL",
        "GATEKEEPER_BILLING_DSN",
        "GATEKEEPER_WEBHOOK_SECRET",
    }
    for name in ("gk-gatekeeper", "gk-gatekeeper-worker"):
        container = _find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"secretRef": {"name": "gk-gatekeeper"}}]
        assert not any("REDIS_URL" in e["name"] or "DSN" in e["name"] for e in container["env"])


def test_existing_secret_is_used_and_none_rendered() -> None:
    docs = manifests("gateway")
    assert not any(d["kind"] == "Secret" for d in docs)
    serve = _find(docs, "Deployment", "gk-gatekeeper")["spec"]["template"]["spec"]["containers"][0]
    assert serve["envFrom"] == [{"secretRef": {"name": "gatekeeper-credentials"}}]


def test_policy_configmap_defaults_to_the_reference_example() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    demo = (REPO / "src" / "gatekeeper" / "data" / "demo.yaml").read_text()
    assert values["policy"] == demo
    configmap = _find(manifests("default"), "ConfigMap", "gk-gatekeeper-policy")
    assert configmap["data"]["policy.yaml"] == demo


_CLI = "import sys; from gatekeeper.cli import main; sys.exit(main(sys.argv[1:]))"


def test_rendered_policy_passes_check_config(tmp_path: Path) -> None:
    configmap = _find(manifests("default"), "ConfigMap", "gk-gatekeeper-policy")
    policy = tmp_path / "policy.yaml"
    policy.write_text(configmap["data"]["policy.yaml"])
    result = subprocess.run(
        [sys.executable, "-c", _CLI, "check-config", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def test_policy_change_rolls_the_pods() -> None:
    def checksum(sets: tuple[str, ...]) -> str:
        result = render(sets=sets)
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        serve = _find(tuple(docs), "Deployment", "gk-gatekeeper")
        return str(serve["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    before = checksum(())
    assert before == checksum(())  # deterministic
    assert before != checksum(("policy=version: 1",))


def test_secret_change_rolls_the_pods() -> None:
    def annotations(url: str) -> dict[str, str]:
        result = render(sets=(f"redis.url={url}",))
        assert result.returncode == 0, result.stderr
        docs = tuple(d for d in yaml.safe_load_all(result.stdout) if d)
        worker = _find(docs, "Deployment", "gk-gatekeeper-worker")
        return dict(worker["spec"]["template"]["metadata"]["annotations"])

    assert (
        annotations("redis://a:6379/0")["checksum/secret"]
        != annotations("redis://b:6379/0")["checksum/secret"]
    )


@pytest.mark.parametrize(
    ("sets", "reason"),
    [
        (("serve.autoscaling.enabled=true",), "needs a shared Redis"),
        (
            ("redis.url=redis://r:6379/0", "worker.replicaCount=2"),
            "needs a PostgreSQL billing store",
        ),
        (("redis.url=redis://r:6379/0", "redis.bundled.enabled=true"), "not both"),
        (("istio.enabled=true",), "istio.workloadSelector"),
        (
            ("istio.enabled=true", "istio.workloadSelector.app=x", "sidecar.enabled=true"),
            "alternatives",
        ),
    ],
)
def test_contradictory_values_fail_with_the_reason(sets: tuple[str, ...], reason: str) -> None:
    result = render(sets=sets)
    assert result.returncode != 0
    assert reason in result.stderr


def test_bundled_redis_is_wired_in() -> None:
    docs = manifests("sidecar")
    _find(docs, "Deployment", "gk-gatekeeper-redis")
    _find(docs, "Service", "gk-gatekeeper-redis")
    serve = _container(_find(docs, "Deployment", "gk-gatekeeper"), "gatekeeper")
    env = {e["name"]: e.get("value") for e in serve["env"]}
    assert env["GATEKEEPER_REDIS_URL"] == "redis://gk-gatekeeper-redis:6379/0"


# --- sidecar mode -------------------------------------------------------------------------


def test_chart_envoy_bootstrap_is_a_copy_of_envoy_sidecar_yaml() -> None:
    chart_copy = (CHART / "files" / "envoy-sidecar.yaml").read_bytes()
    assert chart_copy == (REPO / "envoy" / "sidecar.yaml").read_bytes(), (
        "run scripts/gen-envoy (both are generated by gatekeeper envoy-config)"
    )


def test_sidecar_pod_runs_envoy_gatekeeper_and_the_app() -> None:
    docs = manifests("sidecar")
    pod = _find(docs, "Deployment", "gk-gatekeeper")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["gatekeeper", "envoy", "api"]
    envoy = _container(_find(docs, "Deployment", "gk-gatekeeper"), "envoy")
    assert {"name": "edge", "containerPort": 10080, "protocol": "TCP"} in envoy["ports"]
    service = _find(docs, "Service", "gk-gatekeeper")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}["edge"] == "edge"


def test_rendered_sidecar_bootstrap_passes_envoy_validate(tmp_path: Path) -> None:
    try:
        envoy = envoy_binary()
    except ToolUnavailable as exc:
        pytest.skip(str(exc))
    configmap = _find(manifests("sidecar"), "ConfigMap", "gk-gatekeeper-envoy")
    bootstrap = configmap["data"]["envoy.yaml"]
    parsed = yaml.safe_load(bootstrap)
    listener = parsed["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 10080
    app = next(c for c in parsed["static_resources"]["clusters"] if c["name"] == "app")
    endpoint = app["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 3000
    path = tmp_path / "envoy.yaml"
    path.write_text(bootstrap)
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
