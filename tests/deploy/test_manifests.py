"""deploy/kubernetes: rendered with ``kubectl kustomize``, checked against the API schema.

No cluster: every rendered object is validated offline, strictly (an
unknown field is an error), against the Kubernetes OpenAPI schemas that the
``kubernetes-validate`` package ships; then the points docs/hosting.md
promises are asserted one by one, and the ConfigMap's config.toml starts a
real daemon with the Secret's file mode.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tests.deploy._docker import ROOT

BASE = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.30.0"
"""The oldest Kubernetes the manifests are checked against (the newest is also checked)."""


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "the manifest test needs kubectl (for `kubectl kustomize`)"
    out = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(out) if doc]
    return {doc["kind"]: doc for doc in objects}


def test_every_object_is_valid_against_the_kubernetes_schema(
    rendered: dict[str, dict[str, Any]],
) -> None:
    import kubernetes_validate

    assert set(rendered) == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
    }
    for version in (KUBERNETES, kubernetes_validate.latest_version()):
        for obj in rendered.values():
            kubernetes_validate.validate(obj, version, strict=True)
    # The check is not vacuous: a misspelt field or a wrong type is caught.
    typo = copy.deepcopy(rendered["Deployment"])
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGett": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES, strict=True)
    wrong = copy.deepcopy(rendered["Deployment"])
    wrong["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES, strict=True)


def test_the_deployment_is_what_docs_hosting_promises(rendered: dict[str, dict[str, Any]]) -> None:
    deployment = rendered["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    port = container["ports"][0]
    assert port["containerPort"] == 8765 and port["name"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The pre-stop pause plus the listener's 5 s drain fit in the grace.
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pause > 0 and pod["terminationGracePeriodSeconds"] >= pause + 5 + 10
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert all(m["readOnly"] for m in mounts.values())
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == rendered["ConfigMap"]["metadata"]["name"]
    assert volumes["secret"]["secret"]["secretName"] == rendered["Secret"]["metadata"]["name"]
    env = {e["name"]: e for e in container["env"]}
    assert env["BICAMERAL_STORE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "store-url"
    assert {"token", "store-url"} <= rendered["Secret"]["stringData"].keys()


def test_the_service_ingress_and_budget_select_the_pods(
    rendered: dict[str, dict[str, Any]],
) -> None:
    pod_labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = rendered["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budget = rendered["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["maxUnavailable"] == 1 < rendered["Deployment"]["spec"]["replicas"]
    ingress = rendered["Ingress"]
    notes = ingress["metadata"]["annotations"]
    # Hashed on Mcp-Session-Id, or on the request id a new session takes as its id.
    assert notes["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$mcp_affinity"
    config = rendered["ConfigMap"]["data"]["config.toml"]
    assert 'session_id_header = "X-Request-ID"' in config
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/mcp"
    assert path["backend"]["service"]["name"] == service["metadata"]["name"]


def test_the_configmaps_config_starts_a_daemon(rendered: dict[str, dict[str, Any]]) -> None:
    """config.toml as shipped, with only the address made local, runs a real daemon."""
    from tests.mcp.conftest import BICAMERAL

    text = rendered["ConfigMap"]["data"]["config.toml"]
    assert 'listen = "0.0.0.0:8765"' in text
    home = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcm"))
    try:
        home.chmod(0o700)
        secret = home / "token"
        secret.write_text("k" * 64 + "\n")
        secret.chmod(0o440)  # the Deployment's defaultMode
        config = home / "config.toml"
        config.write_text(
            text.replace("0.0.0.0:8765", "127.0.0.1:0").replace(
                "/run/secrets/bicameral/token", str(secret)
            )
        )
        done = subprocess.run(
            [BICAMERAL, "--home", str(home), "daemon", "start", "--config", str(config), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        url = json.loads((home / "daemon.json").read_text())["http_url"]
        with httpx2.Client(timeout=10) as http:
            assert http.get(f"{url}/readyz").status_code == 200
            metrics = http.get(f"{url}/metrics", headers={"Authorization": "Bearer " + "k" * 64})
            assert metrics.status_code == 200
    finally:
        subprocess.run(
            [BICAMERAL, "--home", str(home), "daemon", "stop"], capture_output=True, check=False
        )
        shutil.rmtree(home, ignore_errors=True)
