"""The Kubernetes manifests under deploy/, validated offline: Kubernetes' own schema, checkov, and what they promise.

- Every core object (and every pod template of the RayService, as a v1 PodTemplate) validates strictly
  against the Kubernetes schema that the pinned kubernetes-validate ships (1.37).
- checkov (pinned) finds no failed check in the files and in the RayService's pod templates; every skip
  is an annotation with its reason.
- The server's pods keep the issue's promises: probes on /healthz and /readyz, a startup probe that
  outlasts the model load, a non-root read-only container with no capabilities, seccomp, limits.
- The GPU Deployment is the CPU one but for what makes it a GPU pod; the RayService carries exactly the
  Serve config file (which tests/runtime/cluster/test_config.py validates with Ray Serve's own schema).
- The RayService itself is a KubeRay custom resource, whose CRD no package registry reachable from CI
  ships: it is validated against KubeRay's CRD when KUBERAY_RAYSERVICE_CRD names the CRD file
  (ray.io_rayservices.yaml of the KubeRay source), and skipped otherwise. The KEDA ScaledObjects likewise
  against KEDA's CRD (KEDA_SCALEDOBJECT_CRD: config/crd/bases/keda.sh_scaledobjects.yaml of the KEDA
  source); what they must say (the queue query, the target, the metrics port) is checked always.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
RAY = ROOT / "deploy" / "ray"
KUBERNETES_VERSION = "1.37.0"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBERNETES.glob("*.yaml")) for doc in documents(path)] + documents(
        RAY / "rayservice.yaml"
    )


def rayservice() -> dict[str, Any]:
    return next(doc for doc in documents(RAY / "rayservice.yaml") if doc["kind"] == "RayService")


def ray_pod_templates() -> list[dict[str, Any]]:
    """The RayService's pod templates as v1 PodTemplates, with its annotations (checkov's skips)."""
    service = rayservice()
    config = service["spec"]["rayClusterConfig"]
    groups = [("head", config["headGroupSpec"])] + [(group["groupName"], group) for group in config["workerGroupSpecs"]]
    return [
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {
                "name": f"{service['metadata']['name']}-{name}",
                "namespace": service["metadata"]["namespace"],
                "annotations": service["metadata"].get("annotations", {}),
            },
            "template": group["template"],
        }
        for name, group in groups
    ]


CUSTOM_GROUPS = ("ray.io/", "keda.sh/")


def core_objects() -> list[dict[str, Any]]:
    return [doc for doc in manifests() if not doc["apiVersion"].startswith(CUSTOM_GROUPS)] + ray_pod_templates()


@pytest.mark.parametrize("doc", core_objects(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_core_object_validates_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_files_hold_what_the_plain_server_needs() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in manifests()}
    for name in ("vreyesam", "vreyesam-gpu"):
        for kind in ("Deployment", "Service", "ScaledObject", "PodDisruptionBudget", "NetworkPolicy"):
            assert (kind, name) in kinds, (kind, name)
    assert ("RayService", "vreyesam") in kinds and ("NetworkPolicy", "vreyesam-ray") in kinds
    assert "HorizontalPodAutoscaler" not in {kind for kind, _ in kinds}  # KEDA makes and owns the HPA


def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    if not _has_checkov():
        pytest.skip("checkov is not installed (pip install '.[manifests]')")
    scanned = tmp_path / "scan"
    scanned.mkdir()
    for path in [*KUBERNETES.glob("*.yaml"), RAY / "rayservice.yaml"]:
        (scanned / path.name).write_text(path.read_text())
    (scanned / "ray-pod-templates.yaml").write_text(yaml.safe_dump_all(ray_pod_templates()))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "checkov.main",
            "-d",
            str(scanned),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--skip-download",  # offline: no guidelines or extra checks from checkov's servers
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and not failed, failed
    assert summary["passed"] > 200, summary  # the pods were scanned, RayService pods included
    skipped = report["results"]["skipped_checks"]
    assert {check["check_id"] for check in skipped} == {"CKV_K8S_43"}, skipped
    for doc in [*manifests(), *ray_pod_templates()]:
        for key, value in doc["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert check.startswith("CKV") and len(reason) > 20, (key, value)  # every skip says why


def _has_checkov() -> bool:
    import importlib.util

    return importlib.util.find_spec("checkov") is not None


def deployment(name: str) -> dict[str, Any]:
    return next(doc for doc in manifests() if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name)


def test_the_server_pods_keep_the_promises() -> None:
    for name in ("vreyesam", "vreyesam-gpu"):
        pod = deployment(name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        startup = container["startupProbe"]
        assert (
            startup["httpGet"]["path"] == "/healthz" and startup["periodSeconds"] * startup["failureThreshold"] >= 300
        )
        assert (
            pod["securityContext"]["runAsNonRoot"]
            and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        )
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]) <= set(container["resources"]["limits"])
        tmp, key = pod["volumes"]
        assert "emptyDir" in tmp and key == {
            "name": "model-public-key",
            "configMap": {"name": "vreyesam-model-public-key"},
        }
        assert container["volumeMounts"] == [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "model-public-key", "mountPath": "/etc/vreyesam/keys", "readOnly": True},
        ]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["VREYESAM_MODEL_PUBLIC_KEY_FILE"] == "/etc/vreyesam/keys/model.pub"  # fail closed, read-only
        assert pod["automountServiceAccountToken"] is False


def test_the_gpu_deployment_is_the_cpu_one_but_for_the_gpu() -> None:
    cpu, gpu = copy.deepcopy(deployment("vreyesam")), copy.deepcopy(deployment("vreyesam-gpu"))
    container = gpu["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "VREYESAM_DEVICE", "value": "cuda"} in container["env"]
    assert container["image"].endswith("-gpu")
    # Take away what must differ; the rest must be the same object.
    container["env"].remove({"name": "VREYESAM_DEVICE", "value": "cuda"})
    for doc in (cpu, gpu):
        doc["metadata"]["name"] = "x"
        for labels in (
            doc["metadata"]["labels"],
            doc["spec"]["selector"]["matchLabels"],
            doc["spec"]["template"]["metadata"]["labels"],
        ):
            labels.pop("app.kubernetes.io/component")
        spec = doc["spec"]["template"]["spec"]
        spec.pop("tolerations", None)
        spec["containers"][0].pop("resources")
        spec["containers"][0].pop("image")
    assert gpu == cpu


def test_the_rayservice_carries_the_serve_config_file() -> None:
    embedded = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    assert embedded == yaml.safe_load((RAY / "serve-config.yaml").read_text())


def test_every_ray_node_mounts_the_model_public_key_the_replicas_check() -> None:
    env_vars = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])["applications"][0]["runtime_env"]["env_vars"]
    assert env_vars["VREYESAM_MODEL_PUBLIC_KEY_FILE"] == "/etc/vreyesam/keys/model.pub"
    for template in ray_pod_templates():
        spec = template["template"]["spec"]
        assert {"name": "model-public-key", "configMap": {"name": "vreyesam-model-public-key"}} in [
            {k: (v if k != "configMap" else {"name": v["name"]}) for k, v in volume.items()}
            for volume in spec["volumes"]
        ]
        (container,) = spec["containers"]
        assert {"name": "model-public-key", "mountPath": "/etc/vreyesam/keys", "readOnly": True} in container[
            "volumeMounts"
        ]


def test_every_ray_node_runs_the_proxy_gate_and_token_auth() -> None:
    service = rayservice()
    config = service["spec"]["rayClusterConfig"]
    assert config["authOptions"] == {"mode": "token"}
    for template in ray_pod_templates():
        (container,) = template["template"]["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == "vreyesam.runtime.cluster.proxy:middlewares"
        assert int(env["VREYESAM_MAX_BODY_BYTES"]) > 0


@pytest.mark.skipif(not os.environ.get("KUBERAY_RAYSERVICE_CRD"), reason="no KubeRay CRD file (KUBERAY_RAYSERVICE_CRD)")
def test_the_rayservice_validates_against_kuberays_crd() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    crd = yaml.safe_load(Path(os.environ["KUBERAY_RAYSERVICE_CRD"]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = version["schema"]["openAPIV3Schema"]
    jsonschema.validate(rayservice(), _strict(schema))


def _strict(schema: Any) -> Any:
    """The CRD's OpenAPI schema as JSON Schema that also refuses unknown fields (as the API server prunes
    them away silently), except where the CRD keeps unknown fields on purpose."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items() if not key.startswith("x-kubernetes")}
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out.setdefault("additionalProperties", False)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


METRICS_PORT = 9464  # runtime/settings.py's default VREYESAM_METRICS_PORT


def test_the_metrics_port_is_scraped_but_never_served_to_the_public() -> None:
    for name in ("vreyesam", "vreyesam-gpu"):
        template = deployment(name)["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == METRICS_PORT
        (container,) = template["spec"]["containers"]
        assert {"name": "metrics", "containerPort": METRICS_PORT} in container["ports"]
    for service in objects("Service"):
        assert all(
            port["targetPort"] != "metrics" and port["port"] != METRICS_PORT for port in service["spec"]["ports"]
        )
    for policy in objects("NetworkPolicy"):
        for rule in policy["spec"]["ingress"]:
            if any(port["port"] == METRICS_PORT for port in rule.get("ports", [])):
                (peer,) = rule["from"]
                assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def test_each_server_scales_on_its_own_queue_and_on_cpu() -> None:
    for scaled in objects("ScaledObject"):
        name = scaled["metadata"]["name"]
        target = deployment(name)
        assert scaled["spec"]["scaleTargetRef"] == {"name": name}
        component = target["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        queue, cpu = scaled["spec"]["triggers"]
        assert queue["type"] == "prometheus" and queue["metricType"] == "AverageValue"
        query = queue["metadata"]["query"]
        for gauge in ("vreyesam_inflight_requests", "vreyesam_queued_requests"):
            assert f'{gauge}{{namespace="vreyesam",app_kubernetes_io_component="{component}"}}' in query
        assert float(queue["metadata"]["threshold"]) >= 1
        assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
        assert scaled["spec"]["minReplicaCount"] >= 1


@pytest.mark.skipif(not os.environ.get("KEDA_SCALEDOBJECT_CRD"), reason="no KEDA CRD file (KEDA_SCALEDOBJECT_CRD)")
def test_the_scaled_objects_validate_against_kedas_crd() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    crd = yaml.safe_load(Path(os.environ["KEDA_SCALEDOBJECT_CRD"]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    scaled = objects("ScaledObject")
    assert scaled
    for doc in scaled:
        jsonschema.validate(doc, schema)
