"""The GitOps manifests under `argocd/applications/torghut/`, checked before Argo CD sees them.

Each check is a function from manifest documents to a list of problems, so that the tests
below can prove that every check bites: they break an in-memory copy of the manifest (a
misspelt variable, a flipped rollout default, a bad field) and assert the check reports it.
The main tests assert that the committed manifests have no problem at all.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from torghut.config import LLMProvider, Settings, load_settings
from torghut.domain import FailMode, TradingMode
from torghut.errors import ConfigError

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "argocd" / "applications" / "torghut"
# The newest Kubernetes schema the pinned kubernetes-validate ships.
K8S_VERSION = kubernetes_validate.latest_version()
NAMESPACE = "torghut"
PORT = 8181
STRATEGY_PATH = "/etc/torghut/strategies.yaml"
STRATEGY_CONFIGMAP = "torghut-strategies"
STRATEGY_KEY = "strategies.yaml"
CRD_SCHEMAS = Path(__file__).resolve().parents[1] / "fixtures" / "crd-schemas"
# Custom resources validated against the minimal schemas vendored in CRD_SCHEMAS (their README
# says where they come from); everything else against the Kubernetes schema.
CRD_SCHEMA_FILES = {
    ("serving.knative.dev/v1", "Service"): "knative-service.schema.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.schema.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.schema.json",
}
RESOURCES = {
    "strategy-configmap.yaml",
    "migrate-job.yaml",
    "knative-service.yaml",
    "network-policy.yaml",
    "podmonitor.yaml",
    "prometheus-rules.yaml",
}
IMAGE = "torghut"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# How long `serve` may take to open its port (migrations run before it): the startup probe
# must wait at least this long, and the PreSync migration Job must give up sooner.
MIGRATION_BUDGET_SECONDS = 600
# Knative labels every pod of a Service with its name; the policies select on it.
POD_SELECTOR = {"serving.knative.dev/service": "torghut"}
# Knative names the user container's port so in the pods it creates.
KNATIVE_USER_PORT_NAME = "user-port"
MONITORING_NAMESPACE = "monitoring"

# The rollout stage the committed manifest is at (docs/rollout.md). An accidental flip of a
# rollout variable fails these tests; moving to the next stage on purpose is one commit that
# changes knative-service.yaml and this number together.
ROLLOUT_STAGE = 1
_JANGAR = {
    "LLM_ENABLED": "true",
    "LLM_PROVIDER": "jangar",
    "JANGAR_BASE_URL": "http://jangar.jangar.svc.cluster.local",
}
STAGES: dict[int, dict[str, str]] = {
    # 1: review everything, act on nothing; 2 checks the audit rows of 1 (no manifest change).
    1: {
        **_JANGAR,
        "LLM_SHADOW_MODE": "true",
        "LLM_FAIL_MODE": "pass_through",
        "TRADING_MODE": "paper",
    },
    2: {
        **_JANGAR,
        "LLM_SHADOW_MODE": "true",
        "LLM_FAIL_MODE": "pass_through",
        "TRADING_MODE": "paper",
    },
    # 3: the gate acts, in paper; a failed review still lets the order through.
    3: {
        **_JANGAR,
        "LLM_SHADOW_MODE": "false",
        "LLM_FAIL_MODE": "pass_through",
        "TRADING_MODE": "paper",
    },
    # 4: live, fail-closed.
    4: {
        **_JANGAR,
        "LLM_SHADOW_MODE": "false",
        "LLM_FAIL_MODE": "veto",
        "TRADING_MODE": "live",
        "TRADING_LIVE_ENABLED": "true",
    },
}
ROLLOUT_DEFAULTS = STAGES[1]
# Literal values the deployment is defined by at every stage.
REQUIRED_LITERALS: dict[str, str] = {
    "TORGHUT_PORT": str(PORT),
    "TRADING_ENABLED": "true",
    "TRADING_SIGNAL_SOURCE": "clickhouse",
    "TRADING_BROKER": "alpaca",
    "TRADING_STRATEGY_CONFIG_PATH": STRATEGY_PATH,
}
REQUIRED_PRESENT = ("CLICKHOUSE_URL",)
# Pinned explicitly, at the CONTRACT §2 defaults.
PINNED_NUMBERS: dict[str, float] = {
    "LLM_TIMEOUT_SECONDS": 20,
    "LLM_CONNECT_TIMEOUT_SECONDS": 3,
    "LLM_FIRST_TOKEN_TIMEOUT_SECONDS": 15,
    "LLM_IDLE_TIMEOUT_SECONDS": 10,
    "LLM_MAX_RESPONSE_BYTES": 1048576,
    "LLM_MAX_RETRIES": 1,
    "LLM_MAX_CONCURRENCY": 8,
    "LLM_CIRCUIT_MAX_ERRORS": 3,
    "LLM_CIRCUIT_WINDOW_SECONDS": 300,
    "LLM_CIRCUIT_COOLDOWN_SECONDS": 600,
}
# Must come from a Secret; the value is the secret's optional flag.
SECRET_ENV: dict[str, bool] = {
    "DB_DSN": False,
    "APCA_API_KEY_ID": False,
    "APCA_API_SECRET_KEY": False,
    "CLICKHOUSE_PASSWORD": False,
    "JANGAR_API_KEY": True,
    "TORGHUT_API_TOKEN": True,
}
# Never a literal in Git, whether or not the manifest sets it.
NEVER_LITERAL = {*SECRET_ENV, "OPENAI_API_KEY"}
# Fields of a Knative revision spec that a Kubernetes PodSpec does not have.
KNATIVE_ONLY_SPEC_FIELDS = (
    "containerConcurrency",
    "timeoutSeconds",
    "responseStartTimeoutSeconds",
    "idleTimeoutSeconds",
)
# Knative sets these itself and rejects them in a container's env.
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

Doc = dict[str, Any]


# --------------------------------------------------------------------------- loading


def load_documents(directory: Path = MANIFEST_DIR) -> dict[str, list[Doc]]:
    """Every YAML document under `directory`, by file name."""
    out: dict[str, list[Doc]] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        with path.open(encoding="utf-8") as fh:
            out[path.name] = [d for d in yaml.safe_load_all(fh) if d is not None]
    return out


def one(documents: dict[str, list[Doc]], kind: str, api_prefix: str = "") -> Doc:
    found = [
        d
        for docs in documents.values()
        for d in docs
        if d.get("kind") == kind and str(d.get("apiVersion", "")).startswith(api_prefix)
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def knative_service(documents: dict[str, list[Doc]]) -> Doc:
    return one(documents, "Service", "serving.knative.dev/")


def container(service: Doc) -> Doc:
    containers = service["spec"]["template"]["spec"]["containers"]
    return containers[0] if isinstance(containers, list) and containers else {}


def env_entries(service: Doc) -> list[Doc]:
    return list(container(service).get("env") or [])


def literal_env(service: Doc) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in env_entries(service) if "value" in e}


def _as_bool(value: str) -> bool | None:
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def _same(name: str, actual: str, expected: str) -> bool:
    """Equal as the settings would read them (booleans and fail-mode spellings)."""
    expected_bool = _as_bool(expected)
    if expected_bool is not None and name not in ("TORGHUT_PORT",):
        return _as_bool(actual) is expected_bool
    if name == "LLM_FAIL_MODE":
        return actual.strip().lower().replace("-", "_") == expected
    return actual.strip() == expected


# --------------------------------------------------------------------------- checks


def check_pod_schema(service: Doc) -> list[str]:
    """The revision template against the Kubernetes schema (strict: unknown fields fail)."""
    template = service.get("spec", {}).get("template", {})
    spec = {k: v for k, v in template.get("spec", {}).items() if k not in KNATIVE_ONLY_SPEC_FIELDS}
    pod_template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": service.get("metadata", {}).get("name", "torghut")},
        "template": {"metadata": template.get("metadata", {}), "spec": spec},
    }
    try:
        kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return [f"pod template {where}: {exc.message}"]
    return []


def check_service_shape(service: Doc) -> list[str]:
    """Knative Service basics: identity, one replica, the port, probes, resources, hardening."""
    problems: list[str] = []
    meta = service.get("metadata", {})
    if service.get("apiVersion") != "serving.knative.dev/v1" or service.get("kind") != "Service":
        problems.append("not a serving.knative.dev/v1 Service")
    if meta.get("name") != "torghut" or meta.get("namespace") != NAMESPACE:
        problems.append(f"metadata: want name torghut in namespace {NAMESPACE}")
    template = service.get("spec", {}).get("template", {})
    annotations = template.get("metadata", {}).get("annotations", {}) or {}
    for key in ("autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale"):
        if str(annotations.get(key)) != "1":
            problems.append(f'{key} must be "1" (got {annotations.get(key)!r})')
    spec = template.get("spec", {})
    containers = spec.get("containers") or []
    if len(containers) != 1:
        problems.append(f"want exactly one container, got {len(containers)}")
        return problems
    c = containers[0]
    command = [*(c.get("command") or []), *(c.get("args") or [])]
    if command not in (["serve"], ["torghut", "serve"]):
        problems.append(f"container must run `torghut serve` (got {command})")
    ports = c.get("ports") or []
    if len(ports) != 1 or ports[0].get("containerPort") != PORT:
        problems.append(f"want exactly one containerPort {PORT}, got {ports}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path:
            problems.append(f"{probe} must GET {path} (got {get.get('path')!r})")
        if get.get("port") not in (None, PORT):
            problems.append(f"{probe} port must be the container port {PORT}")
    resources = c.get("resources") or {}
    for part in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(part) or {}):
            problems.append(f"resources.{part} must set cpu and memory")
    sc = c.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True:
        problems.append("securityContext.runAsNonRoot must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("securityContext.allowPrivilegeEscalation must be false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("securityContext.readOnlyRootFilesystem must be true")
    reserved = sorted(KNATIVE_RESERVED_ENV & {e.get("name") for e in c.get("env") or []})
    if reserved:
        problems.append(f"env sets Knative-reserved {reserved}")
    return problems


def check_env_names(service: Doc) -> list[str]:
    """Every variable set is one the settings know; none twice; each has one source."""
    problems: list[str] = []
    seen: set[str] = set()
    for entry in env_entries(service):
        name = str(entry.get("name", ""))
        if name.lower() not in Settings.model_fields:
            problems.append(f"env {name}: not a Torghut setting (typo?)")
        if name in seen:
            problems.append(f"env {name}: set twice")
        seen.add(name)
        if ("value" in entry) == ("valueFrom" in entry):
            problems.append(f"env {name}: needs exactly one of value / valueFrom")
        elif "value" in entry and not isinstance(entry["value"], str):
            problems.append(f"env {name}: value must be a string (quote it)")
    return problems


def check_rollout_defaults(service: Doc, stage: int = ROLLOUT_STAGE) -> list[str]:
    """The rollout variables are those of `stage` (stage 1: enabled, shadow, pass-through,
    through Jangar)."""
    return _check_literals(service, STAGES[stage])


def check_deployment_values(service: Doc) -> list[str]:
    problems = _check_literals(service, REQUIRED_LITERALS)
    env = literal_env(service)
    problems += [f"env {n}: must be set" for n in REQUIRED_PRESENT if n not in env]
    for name, expected in PINNED_NUMBERS.items():
        if name not in env:
            problems.append(f"env {name}: must be pinned (to {expected:g})")
            continue
        try:
            if float(env[name]) != expected:
                problems.append(f"env {name}={env[name]}: CONTRACT default is {expected:g}")
        except ValueError:
            problems.append(f"env {name}={env[name]!r}: not a number")
    return problems


def _check_literals(service: Doc, expected: dict[str, str]) -> list[str]:
    env = literal_env(service)
    problems: list[str] = []
    for name, want in expected.items():
        if name not in env:
            problems.append(f"env {name}: must be set to {want}")
        elif not _same(name, env[name], want):
            problems.append(f"env {name}={env[name]}: must be {want}")
    return problems


def check_secrets(service: Doc) -> list[str]:
    """Secrets come from Secrets; only the Jangar key may be missing."""
    problems: list[str] = []
    entries = {str(e.get("name")): e for e in env_entries(service)}
    for name in sorted(NEVER_LITERAL):
        if name in entries and "value" in entries[name]:
            problems.append(f"env {name}: a secret must not be a literal in Git")
    for name, optional in SECRET_ENV.items():
        ref = ((entries.get(name) or {}).get("valueFrom") or {}).get("secretKeyRef")
        if not ref or not ref.get("name") or not ref.get("key"):
            problems.append(f"env {name}: must come from valueFrom.secretKeyRef")
        elif bool(ref.get("optional", False)) is not optional:
            problems.append(f"env {name}: secretKeyRef.optional must be {str(optional).lower()}")
    return problems


def settings_env(service: Doc) -> dict[str, str]:
    """The environment the pod would see, with placeholders for what comes from Secrets."""
    env = literal_env(service)
    for entry in env_entries(service):
        if "valueFrom" in entry:
            name = str(entry["name"])
            env[name] = (
                "postgresql://torghut:placeholder@postgres.torghut.svc:5432/torghut"
                if name == "DB_DSN"
                else f"placeholder-{name.lower()}"
            )
    return env


def check_settings_load(service: Doc, stage: int = ROLLOUT_STAGE) -> list[str]:
    """The manifest's values through the real settings parser, then the resolved rollout
    defaults (the raw strings could be right and still mean something else)."""
    try:
        settings = load_settings(settings_env(service), env_file=None)
    except ConfigError as exc:
        return [f"settings: {exc}"]
    problems: list[str] = []
    stage_env = STAGES[stage]
    resolved = {
        "llm_enabled": (settings.llm_enabled, True),
        "llm_shadow_mode": (settings.llm_shadow_mode, _as_bool(stage_env["LLM_SHADOW_MODE"])),
        "fail_mode": (settings.fail_mode, FailMode(stage_env["LLM_FAIL_MODE"])),
        "provider": (settings.provider, LLMProvider.JANGAR),
        "trading_mode": (settings.trading_mode, TradingMode(stage_env["TRADING_MODE"])),
        "torghut_port": (settings.torghut_port, PORT),
    }
    for field, (actual, want) in resolved.items():
        if actual != want:
            problems.append(f"settings.{field} resolves to {actual!r}, want {want!r}")
    return problems


def check_strategy_mount(service: Doc, configmap: Doc) -> list[str]:
    """TRADING_STRATEGY_CONFIG_PATH points at the ConfigMap key, mounted read-only."""
    spec = service.get("spec", {}).get("template", {}).get("spec", {})
    path = Path(literal_env(service).get("TRADING_STRATEGY_CONFIG_PATH", ""))
    volumes = {v.get("name"): v for v in spec.get("volumes") or [] if "configMap" in v}
    for mount in container(service).get("volumeMounts") or []:
        volume = volumes.get(mount.get("name"))
        if volume is None or Path(mount.get("mountPath", "")) != path.parent:
            continue
        source = volume["configMap"]
        items = source.get("items")
        key = path.name
        if items:
            key = next((i["key"] for i in items if i.get("path") == path.name), "")
        problems = []
        if source.get("name") != configmap["metadata"]["name"]:
            problems.append(f"volume {volume['name']} mounts ConfigMap {source.get('name')}")
        if key not in (configmap.get("data") or {}):
            problems.append(f"{path} maps to key {key!r}, not in the ConfigMap")
        if mount.get("readOnly") is not True:
            problems.append(f"mount {mount.get('mountPath')} must be readOnly")
        return problems
    return [f"no ConfigMap volume mounted at {path.parent}"]


def check_configmap(configmap: Doc) -> list[str]:
    problems: list[str] = []
    meta = configmap.get("metadata", {})
    if configmap.get("apiVersion") != "v1" or configmap.get("kind") != "ConfigMap":
        problems.append("not a v1 ConfigMap")
    if meta.get("name") != STRATEGY_CONFIGMAP:
        problems.append(f"ConfigMap must be named {STRATEGY_CONFIGMAP}")
    try:
        kubernetes_validate.validate(configmap, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problems.append(f"ConfigMap: {exc.message}")
    text = (configmap.get("data") or {}).get(STRATEGY_KEY)
    if not isinstance(text, str):
        return [*problems, f"ConfigMap has no {STRATEGY_KEY} key"]
    try:
        catalog = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [*problems, f"{STRATEGY_KEY}: invalid YAML ({type(exc).__name__})"]
    entries = catalog.get("strategies") if isinstance(catalog, dict) else None
    if not isinstance(entries, list) or not entries:
        return [*problems, f"{STRATEGY_KEY}: needs a non-empty 'strategies' list"]
    if not any(isinstance(e, dict) and e.get("enabled", True) for e in entries):
        problems.append(f"{STRATEGY_KEY}: no strategy is enabled")
    return problems


def check_kustomization(kustomization: Doc, directory: Path = MANIFEST_DIR) -> list[str]:
    problems: list[str] = []
    if kustomization.get("namespace") != NAMESPACE:
        problems.append(f"kustomization namespace must be {NAMESPACE}")
    resources = list(kustomization.get("resources") or [])
    for resource in resources:
        if not (directory / resource).is_file():
            problems.append(f"kustomization resource {resource} does not exist")
    missing = sorted(RESOURCES - set(resources))
    if missing:
        problems.append(f"kustomization must list {missing}")
    return [*problems, *check_image_pins(kustomization)]


def check_image_pins(kustomization: Doc) -> list[str]:
    """The image by digest only: a tag can be moved under a running revision, a digest not.
    The committed digest is a placeholder that CI replaces; only its form is checked."""
    entries = [i for i in kustomization.get("images") or [] if i.get("name") == IMAGE]
    if len(entries) != 1:
        return [f"kustomization images: want one entry for {IMAGE}, got {len(entries)}"]
    entry = entries[0]
    problems: list[str] = []
    if "newTag" in entry:
        problems.append(f"image {IMAGE}: pinned by tag {entry['newTag']!r}; pin a digest")
    if not DIGEST.match(str(entry.get("digest", ""))):
        problems.append(
            f"image {IMAGE}: digest must be sha256:<64 hex>, got {entry.get('digest')!r}"
        )
    if not entry.get("newName"):
        problems.append(f"image {IMAGE}: newName (the registry path) is missing")
    return problems


def check_startup_probe(service: Doc) -> list[str]:
    """`serve` migrates before it opens the port: the startup probe must outwait that, and
    liveness must not need its own initial delay (it starts only after startup succeeded)."""
    c = container(service)
    probe = c.get("startupProbe") or {}
    get = probe.get("httpGet") or {}
    problems: list[str] = []
    if get.get("path") != "/healthz" or get.get("port") not in (None, PORT):
        problems.append(f"startupProbe must GET /healthz on {PORT}")
    budget = int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))
    if budget < MIGRATION_BUDGET_SECONDS:
        problems.append(
            f"startupProbe allows {budget}s, less than the {MIGRATION_BUDGET_SECONDS}s a "
            "migration may take"
        )
    return problems


def check_migration_job(job: Doc, service: Doc) -> list[str]:
    """`torghut db upgrade` as an Argo CD PreSync hook, on the service's database and image,
    hardened like the service, and giving up within the startup probe's budget."""
    problems: list[str] = []
    annotations = job.get("metadata", {}).get("annotations") or {}
    if annotations.get("argocd.argoproj.io/hook") != "PreSync":
        problems.append("migration Job must be an Argo CD PreSync hook")
    if not annotations.get("argocd.argoproj.io/hook-delete-policy"):
        problems.append("migration Job needs a hook-delete-policy (else the next sync fails)")
    try:
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        problems.append(f"migration Job {where}: {exc.message}")
    spec = job.get("spec", {})
    deadline = spec.get("activeDeadlineSeconds")
    if not isinstance(deadline, int) or deadline > MIGRATION_BUDGET_SECONDS:
        problems.append(
            f"migration Job activeDeadlineSeconds must be <= {MIGRATION_BUDGET_SECONDS}"
        )
    pod = spec.get("template", {}).get("spec", {})
    if pod.get("restartPolicy") != "Never":
        problems.append("migration Job restartPolicy must be Never (backoffLimit retries)")
    containers = pod.get("containers") or [{}]
    c = containers[0]
    if [*(c.get("command") or []), *(c.get("args") or [])] != ["db", "upgrade"]:
        problems.append("migration Job must run `torghut db upgrade`")
    if c.get("image") != container(service).get("image"):
        problems.append("migration Job must run the service's image")
    dsn = {e["name"]: e for e in c.get("env") or []}.get("DB_DSN", {})
    service_dsn = {e["name"]: e for e in env_entries(service)}.get("DB_DSN", {})
    if dsn.get("valueFrom") != service_dsn.get("valueFrom") or "value" in dsn:
        problems.append("migration Job must read DB_DSN from the service's Secret")
    sc = c.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True or sc.get("readOnlyRootFilesystem") is not True:
        problems.append("migration Job must run non-root with a read-only root filesystem")
    fake = {"spec": {"template": {"spec": {"containers": [c]}}}}
    problems += [f"migration Job {p}" for p in check_env_names(fake)]
    try:
        load_settings(settings_env(fake), env_file=None)
    except ConfigError as exc:
        problems.append(f"migration Job settings: {exc}")
    return problems


def check_network_policy(policy: Doc, podmonitor: Doc) -> list[str]:
    """Ingress only from named namespaces; the pods it guards are the service's; Prometheus
    may reach the port the PodMonitor scrapes."""
    problems: list[str] = []
    spec = policy.get("spec", {})
    try:
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problems.append(f"NetworkPolicy: {exc.message}")
    if (spec.get("podSelector") or {}).get("matchLabels") != POD_SELECTOR:
        problems.append(f"NetworkPolicy must select the service's pods {POD_SELECTOR}")
    if "Ingress" not in (spec.get("policyTypes") or []):
        problems.append("NetworkPolicy must restrict Ingress")
    monitoring_ports: set[int] = set()
    for rule in spec.get("ingress") or []:
        sources = rule.get("from") or []
        if not sources or any(not s for s in sources):
            problems.append("NetworkPolicy ingress rule without sources allows everyone")
        if not rule.get("ports"):
            problems.append("NetworkPolicy ingress rule without ports allows every port")
        for source in sources:
            labels = (source.get("namespaceSelector") or {}).get("matchLabels") or {}
            if labels.get("kubernetes.io/metadata.name") == MONITORING_NAMESPACE:
                monitoring_ports |= {p.get("port") for p in rule.get("ports") or []}
    if PORT not in monitoring_ports:
        problems.append(f"NetworkPolicy must let {MONITORING_NAMESPACE} scrape port {PORT}")
    pm_spec = podmonitor.get("spec", {})
    if (pm_spec.get("selector") or {}).get("matchLabels") != POD_SELECTOR:
        problems.append(f"PodMonitor must select the service's pods {POD_SELECTOR}")
    endpoints = pm_spec.get("podMetricsEndpoints") or []
    if [(e.get("port"), e.get("path")) for e in endpoints] != [
        (KNATIVE_USER_PORT_NAME, "/metrics")
    ]:
        problems.append(f"PodMonitor must scrape /metrics on port {KNATIVE_USER_PORT_NAME}")
    return problems


# --------------------------------------------------------------------------- the whole build


def build_kustomization(directory: Path = MANIFEST_DIR) -> list[Doc]:
    """`kustomize build`, for the features this kustomization uses (namespace, resources,
    configMapGenerator without hash suffix, images); anything else is refused, so a new
    feature cannot be silently skipped. `test_the_build_matches_kubectl_kustomize` holds it
    to the real kustomize where `kubectl` is installed."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    known = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}
    unknown = sorted(set(kustomization) - known)
    assert not unknown, f"build_kustomization does not implement {unknown}"
    docs: list[Doc] = []
    for resource in kustomization.get("resources") or []:
        text = (directory / resource).read_text("utf-8")
        docs += [d for d in yaml.safe_load_all(text) if d]
    for generator in kustomization.get("configMapGenerator") or []:
        options = generator.get("options") or {}
        assert options.get("disableNameSuffixHash") is True, "hash suffixes are not implemented"
        data = {}
        for item in generator.get("files") or []:
            key, _, path = item.rpartition("=")
            data[key or Path(path).name] = (directory / path).read_text("utf-8")
        metadata: Doc = {"name": generator["name"]}
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    images = {i["name"]: i for i in kustomization.get("images") or []}
    for doc in docs:
        doc.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
        template_spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in template_spec.get("containers") or []:
            entry = images.get(re.split(r"[:@]", c.get("image", ""), maxsplit=1)[0])
            if entry:
                name = entry.get("newName", entry["name"])
                c["image"] = (
                    f"{name}@{entry['digest']}"
                    if "digest" in entry
                    else f"{name}:{entry.get('newTag', 'latest')}"
                )
    return docs


def check_built(docs: list[Doc]) -> list[str]:
    """Every object of the build against its schema: the Kubernetes one, or the vendored CRD
    subset; every image by digest; everything in the namespace."""
    problems: list[str] = []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = f"{key[1]}/{doc.get('metadata', {}).get('name')}"
        if doc.get("metadata", {}).get("namespace") != NAMESPACE:
            problems.append(f"{name}: not in namespace {NAMESPACE}")
        schema_file = CRD_SCHEMA_FILES.get(key)
        if schema_file:
            schema = json.loads((CRD_SCHEMAS / schema_file).read_text("utf-8"))
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(schema).iter_errors(doc)
            )
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path)
                problems.append(f"{name} {where}: {error.message}")
        else:
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.absolute_path)
                problems.append(f"{name} {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{name}: no schema for {key[0]} {key[1]} (vendor one)")
        template_spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in template_spec.get("containers") or []:
            if not re.search(r"@sha256:[0-9a-f]{64}$", c.get("image", "")):
                problems.append(f"{name}: image {c.get('image')!r} is not pinned by digest")
    return problems


def all_problems(documents: dict[str, list[Doc]]) -> list[str]:
    service = knative_service(documents)
    configmap = one(documents, "ConfigMap")
    kustomization = one(documents, "Kustomization", "kustomize.config.k8s.io/")
    return [
        *check_pod_schema(service),
        *check_service_shape(service),
        *check_startup_probe(service),
        *check_env_names(service),
        *check_rollout_defaults(service),
        *check_deployment_values(service),
        *check_secrets(service),
        *check_settings_load(service),
        *check_strategy_mount(service, configmap),
        *check_configmap(configmap),
        *check_kustomization(kustomization),
        *check_migration_job(one(documents, "Job"), service),
        *check_network_policy(one(documents, "NetworkPolicy"), one(documents, "PodMonitor")),
        *check_built(build_kustomization()),
    ]


# --------------------------------------------------------------------------- the manifests


@pytest.fixture(scope="module")
def documents() -> dict[str, list[Doc]]:
    return load_documents()


def test_every_yaml_loads(documents: dict[str, list[Doc]]) -> None:
    assert {"knative-service.yaml", "strategy-configmap.yaml", "kustomization.yaml"} <= set(
        documents
    )
    for name, docs in documents.items():
        assert docs, f"{name} is empty"
        for doc in docs:
            assert isinstance(doc, dict) and doc.get("kind"), f"{name}: a document has no kind"


def test_committed_manifests_have_no_problem(documents: dict[str, list[Doc]]) -> None:
    assert all_problems(documents) == []


def test_every_variable_set_is_a_setting(documents: dict[str, list[Doc]]) -> None:
    service = knative_service(documents)
    names = [e["name"] for e in env_entries(service)]
    assert names and all(n.lower() in Settings.model_fields for n in names)
    assert check_env_names(service) == []


def test_rollout_stage_one_is_shadow_with_pass_through() -> None:
    assert STAGES[1]["LLM_SHADOW_MODE"] == "true"
    assert STAGES[1]["LLM_FAIL_MODE"] == "pass_through"
    assert STAGES[1]["TRADING_MODE"] == "paper"
    assert STAGES[4]["LLM_FAIL_MODE"] == "veto"


@pytest.mark.skipif(ROLLOUT_STAGE > 2, reason="the rollout has moved past shadow mode")
def test_rollout_starts_in_shadow_with_pass_through(documents: dict[str, list[Doc]]) -> None:
    service = knative_service(documents)
    env = literal_env(service)
    assert env["LLM_SHADOW_MODE"] == "true"
    assert env["LLM_FAIL_MODE"] == "pass_through"
    assert env["LLM_ENABLED"] == "true"
    assert env["LLM_PROVIDER"] == "jangar"
    assert env["JANGAR_BASE_URL"] == "http://jangar.jangar.svc.cluster.local"
    assert check_rollout_defaults(service) == []
    assert check_settings_load(service) == []


def test_strategy_catalog_parses_with_the_service_parser(documents: dict[str, list[Doc]]) -> None:
    strategy = pytest.importorskip("torghut.trading.strategy")
    configmap = one(documents, "ConfigMap")
    specs = strategy.parse_catalog(configmap["data"][STRATEGY_KEY], "strategy-configmap.yaml")
    by_name = {s.name: s for s in specs}
    assert "macd-rsi-default" in by_name
    default = by_name["macd-rsi-default"]
    assert default.enabled
    assert default.base_timeframe == "1Min"
    assert default.universe_symbols


# --------------------------------------------------------------------------- the checks bite


def set_env(service: Doc, name: str, value: str) -> Doc:
    broken = copy.deepcopy(service)
    entries = container(broken)["env"]
    for entry in entries:
        if entry["name"] == name:
            entry.pop("valueFrom", None)
            entry["value"] = value
            return broken
    entries.append({"name": name, "value": value})
    return broken


def rename_env(service: Doc, old: str, new: str) -> Doc:
    broken = copy.deepcopy(service)
    for entry in container(broken)["env"]:
        if entry["name"] == old:
            entry["name"] = new
    return broken


@pytest.fixture
def service(documents: dict[str, list[Doc]]) -> Doc:
    return copy.deepcopy(knative_service(documents))


def test_a_misspelt_variable_is_reported(service: Doc) -> None:
    broken = rename_env(service, "LLM_SHADOW_MODE", "LLM_SHADOW_MOD")
    assert any("LLM_SHADOW_MOD:" in p for p in check_env_names(broken))
    # ... and the real variable is now missing, which the rollout check sees too.
    assert any("LLM_SHADOW_MODE" in p for p in check_rollout_defaults(broken))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLM_SHADOW_MODE", "false"),
        ("LLM_FAIL_MODE", "veto"),
        ("LLM_ENABLED", "false"),
        ("LLM_PROVIDER", "openai"),
        ("JANGAR_BASE_URL", "http://jangar.example.com"),
    ],
)
def test_a_flipped_rollout_default_is_reported(service: Doc, name: str, value: str) -> None:
    broken = set_env(service, name, value)
    problems = check_rollout_defaults(broken)
    assert len(problems) == 1 and name in problems[0]


@pytest.mark.parametrize(
    ("name", "value"), [("LLM_SHADOW_MODE", "false"), ("LLM_FAIL_MODE", "veto")]
)
def test_a_flipped_default_is_seen_through_the_settings_too(
    service: Doc, name: str, value: str
) -> None:
    assert check_settings_load(set_env(service, name, value)) != []


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_is_a_valid_configuration(service: Doc, stage: int) -> None:
    """Applying a stage's variables to the manifest gives a manifest the checks accept."""
    for name, value in STAGES[stage].items():
        service = set_env(service, name, value)
    assert check_rollout_defaults(service, stage) == []
    assert check_settings_load(service, stage) == []
    assert check_env_names(service) == []
    if STAGES[stage] != STAGES[ROLLOUT_STAGE]:
        assert check_rollout_defaults(service) != []


def test_stage_four_with_pass_through_is_refused(service: Doc) -> None:
    for name, value in STAGES[4].items():
        service = set_env(service, name, value)
    service = set_env(service, "LLM_FAIL_MODE", "pass_through")
    assert check_settings_load(service, 4)[0].startswith("settings: LLM_FAIL_MODE:")


def test_equivalent_spellings_are_not_flagged(service: Doc) -> None:
    broken = set_env(set_env(service, "LLM_SHADOW_MODE", "True"), "LLM_FAIL_MODE", "pass-through")
    assert check_rollout_defaults(broken) == []


@pytest.mark.parametrize(
    ("name", "value", "variable"),
    [
        ("LLM_TIMEOUT_SECONDS", "-1", "LLM_TIMEOUT_SECONDS"),
        ("TORGHUT_PORT", "eighty", "TORGHUT_PORT"),
        ("JANGAR_BASE_URL", "jangar.jangar.svc", "JANGAR_BASE_URL"),
        # Live mode refuses an explicit pass_through: the stage-4 trap.
        ("TRADING_MODE", "live", "LLM_FAIL_MODE"),
    ],
)
def test_a_value_the_settings_refuse_is_reported(
    service: Doc, name: str, value: str, variable: str
) -> None:
    problems = check_settings_load(set_env(service, name, value))
    assert len(problems) == 1 and problems[0].startswith(f"settings: {variable}:")


@pytest.mark.parametrize(
    ("name", "value"), [("LLM_CIRCUIT_MAX_ERRORS", "30"), ("LLM_TIMEOUT_SECONDS", "soon")]
)
def test_a_pinned_value_off_the_contract_is_reported(service: Doc, name: str, value: str) -> None:
    assert any(name in p for p in check_deployment_values(set_env(service, name, value)))


def test_unpinned_values_are_reported(service: Doc) -> None:
    broken = copy.deepcopy(service)
    container(broken)["env"] = [
        e for e in container(broken)["env"] if e["name"] != "LLM_IDLE_TIMEOUT_SECONDS"
    ]
    assert check_deployment_values(broken) == [
        "env LLM_IDLE_TIMEOUT_SECONDS: must be pinned (to 10)"
    ]


def test_the_schema_check_bites(service: Doc) -> None:
    unknown = copy.deepcopy(service)
    container(unknown)["livenessProbe"]["httpGet"]["pth"] = "/healthz"
    assert check_pod_schema(unknown) != []
    wrong_type = copy.deepcopy(service)
    container(wrong_type)["ports"][0]["containerPort"] = "8181"
    assert check_pod_schema(wrong_type) != []
    no_image = copy.deepcopy(service)
    del container(no_image)["image"]
    no_image["spec"]["template"]["spec"]["containers"][0].pop("name")
    assert check_pod_schema(no_image) != []


def test_knative_only_fields_do_not_trip_the_schema(service: Doc) -> None:
    service["spec"]["template"]["spec"]["containerConcurrency"] = 0
    service["spec"]["template"]["spec"]["timeoutSeconds"] = 60
    assert check_pod_schema(service) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s["spec"]["template"]["metadata"]["annotations"].update(
            {"autoscaling.knative.dev/max-scale": "2"}
        ),
        lambda s: s["spec"]["template"]["metadata"]["annotations"].pop(
            "autoscaling.knative.dev/min-scale"
        ),
        lambda s: container(s)["livenessProbe"]["httpGet"].update({"path": "/readyz"}),
        lambda s: container(s)["ports"][0].update({"containerPort": 8080}),
        lambda s: container(s)["securityContext"].update({"runAsNonRoot": False}),
        lambda s: container(s)["securityContext"].pop("readOnlyRootFilesystem"),
        lambda s: container(s).update({"args": ["demo"]}),
        lambda s: container(s)["resources"].pop("limits"),
        lambda s: container(s)["env"].append({"name": "PORT", "value": "8181"}),
    ],
    ids=[
        "max-scale-2",
        "no-min-scale",
        "liveness-path",
        "port",
        "root",
        "writable-root",
        "command",
        "no-limits",
        "reserved-env",
    ],
)
def test_the_shape_check_bites(service: Doc, mutate: Callable[[Doc], object]) -> None:
    mutate(service)
    assert check_service_shape(service) != []


def test_the_secret_check_bites(service: Doc) -> None:
    literal = set_env(service, "APCA_API_SECRET_KEY", "sk-live-123")
    assert "env APCA_API_SECRET_KEY: a secret must not be a literal in Git" in check_secrets(
        literal
    )
    assert any(
        "OPENAI_API_KEY" in p for p in check_secrets(set_env(service, "OPENAI_API_KEY", "x"))
    )
    required = copy.deepcopy(service)
    for entry in container(required)["env"]:
        if entry["name"] == "JANGAR_API_KEY":
            del entry["valueFrom"]["secretKeyRef"]["optional"]
    assert check_secrets(required) == ["env JANGAR_API_KEY: secretKeyRef.optional must be true"]


def test_duplicates_and_double_sources_are_reported(service: Doc) -> None:
    container(service)["env"].append({"name": "LLM_ENABLED", "value": "true"})
    container(service)["env"].append(
        {
            "name": "LLM_MODEL",
            "value": "x",
            "valueFrom": {"secretKeyRef": {"name": "a", "key": "b"}},
        }
    )
    container(service)["env"].append({"name": "LLM_MAX_RETRIES", "value": 1})
    problems = check_env_names(service)
    assert "env LLM_ENABLED: set twice" in problems
    assert "env LLM_MODEL: needs exactly one of value / valueFrom" in problems
    assert "env LLM_MAX_RETRIES: value must be a string (quote it)" in problems


def test_the_configmap_and_mount_checks_bite(documents: dict[str, list[Doc]]) -> None:
    service = knative_service(documents)
    configmap = copy.deepcopy(one(documents, "ConfigMap"))
    moved = set_env(service, "TRADING_STRATEGY_CONFIG_PATH", "/etc/other/strategies.yaml")
    assert check_strategy_mount(moved, configmap) != []
    renamed = copy.deepcopy(configmap)
    renamed["data"] = {"catalog.yaml": renamed["data"][STRATEGY_KEY]}
    assert check_strategy_mount(service, renamed) != []
    assert check_configmap(renamed) != []
    broken_yaml = copy.deepcopy(configmap)
    broken_yaml["data"][STRATEGY_KEY] = "strategies: [\n  - name: x"
    assert check_configmap(broken_yaml) != []
    empty = copy.deepcopy(configmap)
    empty["data"][STRATEGY_KEY] = "strategies: []\n"
    assert check_configmap(empty) != []


def test_the_kustomization_check_bites(documents: dict[str, list[Doc]]) -> None:
    kustomization = copy.deepcopy(one(documents, "Kustomization"))
    kustomization["namespace"] = "default"
    kustomization["resources"] = ["knative-service.yaml", "missing.yaml"]
    problems = check_kustomization(kustomization)
    assert any("namespace" in p for p in problems)
    assert any("missing.yaml" in p for p in problems)
    assert any("strategy-configmap.yaml" in p for p in problems)


# --------------------------------------------------------------------------- build, probes, jobs


def test_the_build_has_every_object() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in build_kustomization())
    assert kinds == [
        ("ConfigMap", "torghut-grafana-dashboard"),
        ("ConfigMap", "torghut-strategies"),
        ("Job", "torghut-migrate"),
        ("NetworkPolicy", "torghut"),
        ("PodMonitor", "torghut"),
        ("PrometheusRule", "torghut"),
        ("Service", "torghut"),
    ]


def test_the_build_matches_kubectl_kustomize() -> None:
    """Our small builder against the real kustomize (kubectl's), where it is installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the build is checked by build_kustomization only")
    out = subprocess.run(
        [kubectl, "kustomize", str(MANIFEST_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert out.returncode == 0, out.stderr

    def canonical(docs: list[Doc]) -> list[str]:
        return sorted(json.dumps(d, sort_keys=True) for d in docs)

    real = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert canonical(real) == canonical(build_kustomization())


def test_the_build_check_bites() -> None:
    docs = build_kustomization()
    service = next(d for d in docs if d["kind"] == "Service")
    service["spec"]["traffc"] = []  # a misspelt Knative field
    podmonitor = next(d for d in docs if d["kind"] == "PodMonitor")
    podmonitor["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["fore"] = "5m"
    job = next(d for d in docs if d["kind"] == "Job")
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/proompteng/torghut:0.1.0"
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    policy["metadata"]["namespace"] = "default"
    problems = check_built(docs)
    assert any(p.startswith("Service/torghut spec:") for p in problems), problems
    where = "PodMonitor/torghut spec/podMetricsEndpoints/0/interval"
    assert any(p.startswith(where) for p in problems)
    assert any(p.startswith("PrometheusRule/torghut spec/groups/0/rules/0") for p in problems)
    tagged = "ghcr.io/proompteng/torghut:0.1.0"
    assert f"Job/torghut-migrate: image {tagged!r} is not pinned by digest" in problems
    assert "NetworkPolicy/torghut: not in namespace torghut" in problems
    assert len(problems) == 5


def test_an_unknown_kind_has_no_schema() -> None:
    odd = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": NAMESPACE},
    }
    assert check_built([odd]) == ["Widget/w: no schema for example.com/v1 Widget (vendor one)"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"newTag": "0.1.0"}, "pinned by tag"),
        ({"digest": "sha256:abc"}, "digest must be sha256:<64 hex>"),
        ({"digest": None}, "digest must be sha256:<64 hex>"),
    ],
)
def test_the_image_pin_check_bites(
    documents: dict[str, list[Doc]], change: dict[str, Any], expected: str
) -> None:
    kustomization = copy.deepcopy(one(documents, "Kustomization"))
    entry = kustomization["images"][0]
    for key, value in change.items():
        if value is None:
            entry.pop(key)
        else:
            entry[key] = value
    problems = check_image_pins(kustomization)
    assert len(problems) == 1 and expected in problems[0]


def test_the_committed_digest_is_the_placeholder(documents: dict[str, list[Doc]]) -> None:
    """CI writes the pushed image's digest; in Git it stays the all-zero placeholder."""
    entry = one(documents, "Kustomization")["images"][0]
    assert entry["digest"] == "sha256:" + "0" * 64


def test_the_startup_probe_check_bites(service: Doc) -> None:
    short = copy.deepcopy(service)
    container(short)["startupProbe"]["failureThreshold"] = 6
    assert any("less than" in p for p in check_startup_probe(short))
    missing = copy.deepcopy(service)
    del container(missing)["startupProbe"]
    assert check_startup_probe(missing) != []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda j: j["metadata"]["annotations"].pop("argocd.argoproj.io/hook"),
        lambda j: j["metadata"]["annotations"].pop("argocd.argoproj.io/hook-delete-policy"),
        lambda j: j["spec"].update({"activeDeadlineSeconds": 3600}),
        lambda j: j["spec"]["template"]["spec"]["containers"][0].update({"args": ["serve"]}),
        lambda j: j["spec"]["template"]["spec"]["containers"][0].update({"image": "other"}),
        lambda j: j["spec"]["template"]["spec"]["containers"][0]["env"].__setitem__(
            1, {"name": "DB_DSN", "value": "sqlite:///x.db"}
        ),
        lambda j: j["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "TORGHUT_LOG_LEVL", "value": "info"}
        ),
        lambda j: j["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "LLM_PROVIDER", "value": "jangar"}
        ),
        lambda j: j["spec"]["template"]["spec"].update({"restartPolicy": "OnFailure"}),
        lambda j: j["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop(
            "runAsNonRoot"
        ),
        lambda j: j["spec"].update({"backofLimit": 1}),
    ],
    ids=[
        "no-presync",
        "no-delete-policy",
        "deadline",
        "command",
        "image",
        "dsn-literal",
        "misspelt-env",
        "bad-settings",
        "restart",
        "root",
        "schema",
    ],
)
def test_the_migration_job_check_bites(
    documents: dict[str, list[Doc]], mutate: Callable[[Doc], object]
) -> None:
    job = copy.deepcopy(one(documents, "Job"))
    service = knative_service(documents)
    assert check_migration_job(job, service) == []
    mutate(job)
    assert check_migration_job(job, service) != []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p, m: p["spec"]["podSelector"].update({"matchLabels": {"app": "x"}}),
        lambda p, m: p["spec"].update({"policyTypes": ["Egress"]}),
        lambda p, m: p["spec"]["ingress"][0].update({"from": [{}]}),
        lambda p, m: p["spec"]["ingress"][0].pop("ports"),
        lambda p, m: p["spec"]["ingress"].pop(1),
        lambda p, m: m["spec"]["podMetricsEndpoints"][0].update({"port": "http1"}),
        lambda p, m: m["spec"]["selector"].update({"matchLabels": {"app": "x"}}),
        lambda p, m: p["spec"]["ingress"][0]["ports"][0].update({"protocl": "TCP"}),
    ],
    ids=[
        "selector",
        "egress-only",
        "from-everyone",
        "every-port",
        "no-scrape",
        "podmonitor-port",
        "podmonitor-selector",
        "schema",
    ],
)
def test_the_network_policy_check_bites(
    documents: dict[str, list[Doc]], mutate: Callable[[Doc, Doc], object]
) -> None:
    policy = copy.deepcopy(one(documents, "NetworkPolicy"))
    podmonitor = copy.deepcopy(one(documents, "PodMonitor"))
    assert check_network_policy(policy, podmonitor) == []
    mutate(policy, podmonitor)
    assert check_network_policy(policy, podmonitor) != []


# --------------------------------------------------------------------------- the image


DOCKERFILE = MANIFEST_DIR.parents[2] / "Dockerfile"


def dockerfile_base_images(text: str) -> list[str]:
    """The image of every FROM, with `${ARG}` replaced by the ARG's default; a stage name
    (FROM builder) is not an image. A `# syntax=` frontend is an image too."""
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.MULTILINE))
    stages: set[str] = set()
    images = re.findall(r"^#\s*syntax=(\S+)", text, flags=re.MULTILINE)
    for source, _, stage in re.findall(
        r"^FROM\s+(?:--\S+\s+)*(\S+)(\s+(?:AS|as)\s+(\S+))?", text, flags=re.MULTILINE
    ):
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m[1] or m[2], ""), source)
        if image not in stages:
            images.append(image)
        if stage:
            stages.add(stage)
    return images


def check_dockerfile_pins(text: str) -> list[str]:
    return [
        f"Dockerfile: base image {image!r} is not pinned by digest"
        for image in dockerfile_base_images(text)
        if not re.search(r"@sha256:[0-9a-f]{64}$", image)
    ]


def test_every_base_image_is_pinned_by_digest() -> None:
    text = DOCKERFILE.read_text("utf-8")
    assert len(dockerfile_base_images(text)) == 2
    assert check_dockerfile_pins(text) == []


def test_the_dockerfile_pin_check_bites() -> None:
    text = DOCKERFILE.read_text("utf-8")
    tagged = re.sub(r"@sha256:[0-9a-f]{64}", "", text)
    assert len(check_dockerfile_pins(tagged)) == 2
    assert check_dockerfile_pins("# syntax=docker/dockerfile:1\n" + text) == [
        "Dockerfile: base image 'docker/dockerfile:1' is not pinned by digest"
    ]
    assert check_dockerfile_pins("FROM python:3.11 AS a\nFROM a\n") == [
        "Dockerfile: base image 'python:3.11' is not pinned by digest"
    ]
