"""Offline validation of the Kubernetes manifests in config/deploy/.

kubeconform is not installable here (no registry ships it). Two offline
schema checks stand in: ``kubernetes-validate`` (PyPI; the upstream OpenAPI
JSON schemas of each Kubernetes release, strict: unknown fields are errors)
for the oldest and newest release we support, and our own walk over the
OpenAPI model classes of the official ``kubernetes`` client (unknown fields,
wrong value types, missing required fields). Then the semantics an operator
relies on are checked (replicas, probes, ports, selectors, security).
``kubectl kustomize`` builds the kustomization when kubectl is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate as kv
import pytest
import yaml
from kubernetes import client as k8s

from config.loader import load_text
from dnsserver.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "config" / "deploy"
NOT_MANIFESTS = {"kustomization.yaml", "fedns.yaml"}  # kustomize input, fedns config

# (apiVersion, kind) -> model class of the kubernetes client
MODELS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
READ_VERBS = {"get", "list", "watch"}
# Oldest release the manifests target (mixed-protocol LoadBalancer is GA in
# 1.26, ip_unprivileged_port_start is a safe sysctl since 1.22) and newest.
K8S_VERSIONS = ("1.29", "latest")


# -- schema check ---------------------------------------------------------------


def _check_value(value: Any, typ: str, path: str, errors: list[str]) -> None:
    if value is None:
        return
    low = typ.lower()
    if low.startswith("list["):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check_value(item, typ[5:-1], f"{path}[{i}]", errors)
    elif low.startswith("dict("):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        inner = typ[typ.index(",") + 1 : -1].strip()
        for k, v in value.items():
            if not isinstance(k, str):
                errors.append(f"{path}: key {k!r} is not a string")
            _check_value(v, inner, f"{path}.{k}", errors)
    elif typ == "str":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r} (quote it)")
    elif typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {value!r}")
    elif typ == "bool":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true/false, got {value!r}")
    elif typ in ("object", "datetime", "date", "float"):
        return  # IntOrString, Quantity, free-form
    else:
        _check_model(value, typ, path, errors)


def _check_model(obj: Any, model: str, path: str, errors: list[str]) -> None:
    cls = getattr(k8s, model, None)
    if cls is None:
        errors.append(f"{path}: no model {model} in the kubernetes client")
        return
    if not isinstance(obj, dict):
        errors.append(f"{path}: expected an object ({model}), got {obj!r}")
        return
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        attr = by_json.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: unknown field of {model}")
            continue
        _check_value(value, cls.openapi_types[attr], f"{path}.{key}", errors)
        kwargs[attr] = value
    try:  # the generated setters reject a missing required field
        cls(**kwargs)
    except ValueError as exc:
        errors.append(f"{path}: {exc}")


def schema_errors(doc: dict[str, Any], where: str) -> list[str]:
    errors: list[str] = []
    key = (doc.get("apiVersion"), doc.get("kind"))
    model = MODELS.get(key)  # type: ignore[arg-type]
    if model is None:
        return [f"{where}: unexpected apiVersion/kind {key}"]
    if not doc.get("metadata", {}).get("name"):
        errors.append(f"{where}: metadata.name missing")
    _check_model(doc, model, f"{where}:{doc['kind']}", errors)
    return errors


# -- loading --------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name not in NOT_MANIFESTS)


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_docs() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in manifest_files():
        for i, doc in enumerate(load_docs(path)):
            yield f"{path.name}#{i}", doc


def fedns_docs() -> Iterator[dict[str, Any]]:
    """The objects ``kubectl apply -k config/deploy/`` creates (not member-cluster RBAC)."""
    for name in kustomization()["resources"]:
        yield from load_docs(DEPLOY / name)


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in fedns_docs()
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return one("Deployment", "fedns")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["fedns"]
    return containers[0]  # type: ignore[no-any-return]


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    assert "matchExpressions" not in selector, "keep selectors to matchLabels"
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


# -- tests: schema --------------------------------------------------------------


def test_every_manifest_passes_the_schema_check() -> None:
    files = manifest_files()
    assert len(files) >= 6, files
    errors: list[str] = []
    for where, doc in all_docs():
        errors += schema_errors(doc, where)
    assert errors == []


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_openapi_schema(version: str) -> None:
    release = kv.latest_version() if version == "latest" else version
    errors: list[str] = []
    for where, doc in all_docs():
        try:
            kv.validate(doc, release, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where} ({release}) {path}: {exc.message}")
    assert errors == []


def test_openapi_schema_check_catches_a_typo() -> None:
    doc = one("PodDisruptionBudget")
    bad = {**doc, "spec": {**doc["spec"], "minAvailabel": 1}}
    with pytest.raises(kv.ValidationError, match="minAvailabel"):
        kv.validate(bad, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
          "spec": {"replicas": "2", "selector": {}, "template": {}}}, "expected an integer"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
          "spec": {"ports": [{"port": 53, "protocl": "UDP"}]}}, "unknown field"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
          "spec": {"ports": [{"protocol": "UDP"}]}}, "`port`, must not be `None`"),
        ({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "x"}},
         "unexpected apiVersion/kind"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "metadata.name missing"),
    ],
)
def test_schema_check_catches_mistakes(doc: dict[str, Any], message: str) -> None:
    errors = schema_errors(doc, "bad.yaml")
    assert any(message in e for e in errors), errors


def test_kustomization_lists_every_manifest() -> None:
    k = kustomization()
    assert k["namespace"] == "fedns"
    listed = set(k["resources"])
    # member-rbac.yaml is applied in the member clusters, not with fedns.
    expected = {p.name for p in manifest_files()} - {"member-rbac.yaml"}
    assert listed == expected
    generated = {g["name"]: g for g in k["configMapGenerator"]}
    assert generated["fedns-config"]["files"] == ["fedns.yaml"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_build_is_schema_valid_and_namespaced() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    errors: list[str] = []
    for i, doc in enumerate(docs):
        errors += schema_errors(doc, f"build#{i}")
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == "fedns", doc["metadata"]
    assert errors == []
    kinds = sorted(d["kind"] for d in docs)
    for kind in ("ConfigMap", "Deployment", "PodDisruptionBudget", "Service",
                 "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
        assert kind in kinds, kinds
    # the generated ConfigMap (name with content hash) is the one the pods mount
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert re.fullmatch(r"fedns-config-[a-z0-9]{10}", cm["metadata"]["name"])
    dep = next(d for d in docs if d["kind"] == "Deployment")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert cm["data"]["fedns.yaml"] == (DEPLOY / "fedns.yaml").read_text()


# -- tests: semantics -------------------------------------------------------------


def test_deployment_is_replicated_and_spread(deployment: dict[str, Any]) -> None:
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    pod_labels = spec["template"]["metadata"]["labels"]
    assert selector_matches(spec["selector"], pod_labels)
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    required = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert any(t["topologyKey"] == "kubernetes.io/hostname"
               and selector_matches(t["labelSelector"], pod_labels) for t in required)
    preferred = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert any(t["podAffinityTerm"]["topologyKey"] == "topology.kubernetes.io/zone"
               for t in preferred)


def test_probes_use_healthz_and_readyz_on_the_http_port(container: dict[str, Any]) -> None:
    ports = {p["name"]: p for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        port = container[probe]["httpGet"]["port"]
        assert ports[port]["containerPort"] == 8053, probe
        assert ports[port]["protocol"] == "TCP"


def test_container_ports_and_resources(container: dict[str, Any]) -> None:
    by_proto = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (8053, "TCP")} <= by_proto
    res = container["resources"]
    assert {"cpu", "memory"} <= set(res["requests"])
    assert "memory" in res["limits"]


def test_pods_run_unprivileged(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    pod_sc = deployment["spec"]["template"]["spec"]["securityContext"]
    sc = container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] > 0 and sc.get("runAsUser", pod_sc["runAsUser"]) > 0
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc.get("privileged", False) is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    spec = deployment["spec"]["template"]["spec"]
    assert not spec.get("hostNetwork", False)
    # Pod Security "restricted" allows only these sysctls among ours
    for s in pod_sc.get("sysctls", []):
        assert s["name"] == "net.ipv4.ip_unprivileged_port_start"


def test_every_mount_has_a_volume_and_writable_paths_are_emptydirs(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert set(mounts) == set(volumes)
    for name, m in mounts.items():
        v = volumes[name]
        if not m.get("readOnly"):
            assert "emptyDir" in v, f"{name}: writable mount on a read-only root must be emptyDir"
    assert volumes["config"]["configMap"]["name"] == "fedns-config"
    assert container["args"][:3] == ["serve", "-c", mounts["config"]["mountPath"] + "/fedns.yaml"]
    paths = sorted(m["mountPath"] for m in mounts.values())
    for a in paths:  # no mount nested inside another (configMap volumes are read-only)
        assert not any(b != a and b.startswith(a + "/") for b in paths), paths


def test_services_expose_dns_on_53_udp_and_tcp(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    named = {p["name"]: p for p in container["ports"]}
    dns = one("Service", "fedns-dns")["spec"]
    assert dns["type"] == "LoadBalancer"
    assert dns["externalTrafficPolicy"] == "Local"  # keeps the client address for geo
    assert selector_matches({"matchLabels": dns["selector"]}, pod_labels)
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    for p in dns["ports"]:
        target = named[p["targetPort"]]
        assert (target["containerPort"], target["protocol"]) == (53, p["protocol"])
    metrics = one("Service", "fedns-metrics")["spec"]
    assert metrics.get("type", "ClusterIP") == "ClusterIP"
    assert selector_matches({"matchLabels": metrics["selector"]}, pod_labels)
    [port] = metrics["ports"]
    assert port["port"] == 8053 and named[port["targetPort"]]["containerPort"] == 8053


def test_pdb_selects_the_deployment_pods_and_allows_drains(deployment: dict[str, Any]) -> None:
    pdb = one("PodDisruptionBudget")["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(pdb["selector"], pod_labels)
    assert 1 <= pdb["minAvailable"] < deployment["spec"]["replicas"]


def test_rbac_is_read_only_and_bound_to_the_pods_account(deployment: dict[str, Any]) -> None:
    sa = one("ServiceAccount", "fedns")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    role = one("ClusterRole", "fedns-local-reader")
    resources = set()
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= READ_VERBS, rule
        resources |= set(rule["resources"])
    assert {"services", "endpointslices", "ingresses", "nodes", "serviceexports"} <= resources
    binding = one("ClusterRoleBinding", "fedns-local-reader")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": "fedns-local-reader"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fedns",
                                    "namespace": kustomization()["namespace"]}]


def test_secrets_come_from_secret_objects_not_the_repo(container: dict[str, Any]) -> None:
    assert not any(d["kind"] == "Secret" for d in fedns_docs())
    env = {e["name"]: e for e in container["env"]}
    assert env["FEDNS_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "fedns-api-token"
    assert "value" not in env["FEDNS_API_TOKEN"]
    assert env["FEDNS_COOKIE_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "fedns-cookie-secret", "key": "secret"}
    assert "value" not in env["FEDNS_COOKIE_SECRET"]
    # the secret before the last rotation (docs/operations.md): an optional key of the
    # same Secret, so the pods start without it
    assert env["FEDNS_COOKIE_SECRET_PREVIOUS"]["valueFrom"]["secretKeyRef"] == {
        "name": "fedns-cookie-secret", "key": "previous", "optional": True}
    assert "value" not in env["FEDNS_COOKIE_SECRET_PREVIOUS"]


def test_configmap_config_is_a_valid_fedns_config(
    container: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDNS_API_TOKEN", "test-token")
    monkeypatch.setenv("FEDNS_COOKIE_SECRET", "0f" * 16)
    monkeypatch.delenv("FEDNS_COOKIE_SECRET_PREVIOUS", raising=False)  # the optional key absent
    text = (DEPLOY / "fedns.yaml").read_text()
    cfg = load_text(text, "config/deploy/fedns.yaml")
    assert cfg.api_token == "test-token"  # from the environment, not the file
    assert "test-token" not in text
    # the replicas share the Secret's cookie secret (docs/security.md, DNS Cookies)
    assert cfg.server.cookie_secret == bytes.fromhex("0f" * 16)
    assert cfg.server.cookie_secret_previous == ()
    monkeypatch.setenv("FEDNS_COOKIE_SECRET_PREVIOUS", "e1" * 16)  # during a rotation
    rotating = load_text(text, "config/deploy/fedns.yaml").server
    assert rotating.cookie_secret_previous == (bytes.fromhex("e1" * 16),)
    ports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    for _host, port in cfg.listen.dns:
        assert (port, "UDP") in ports and (port, "TCP") in ports
    assert (cfg.listen.http[1], "TCP") in ports
    assert cfg.listen.http[0] == "0.0.0.0"  # kubelet probes reach the pod IP
    assert cfg.state_dir is not None
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert cfg.state_dir in mounts
    for cluster in cfg.clusters:
        if cluster.kubeconfig:
            assert any(cluster.kubeconfig.startswith(m + "/") for m in mounts), cluster


def test_container_args_are_a_valid_fedns_command_line(container: dict[str, Any]) -> None:
    args = build_parser().parse_args(container["args"])
    assert args.command == "serve" and args.log_format == "json"


def test_pod_user_matches_the_image_user(deployment: dict[str, Any]) -> None:
    dockerfile = ROOT / "Dockerfile"
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    assert users, "Dockerfile has no USER"
    uid = users[-1].split(":")[0]
    pod_sc = deployment["spec"]["template"]["spec"]["securityContext"]
    assert uid == str(pod_sc["runAsUser"]), "Deployment runAsUser differs from the image USER"
