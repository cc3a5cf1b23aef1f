"""Monitoring as code (argocd/applications/torghut/): the alert rules, their promtool unit
tests and the Grafana dashboard, held to the metrics the service really exports.

promtool comes from Debian's `prometheus` package (.ci/run installs it). Without it these
tests skip locally, and fail where TORGHUT_REQUIRE_PROMTOOL=1 (CI) so that a missing tool can
never pass for passing rules."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from torghut.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIR = ROOT / "argocd" / "applications" / "torghut"
RULES_FILE = MANIFEST_DIR / "prometheus-rules.yaml"
DASHBOARD_FILE = MANIFEST_DIR / "grafana-dashboard.json"
RULES_TEST = ROOT / "tests" / "fixtures" / "promtool" / "rules_test.yaml"
# Metric names in PromQL: ours, and the process/platform collectors'.
METRIC_NAME = re.compile(r"\b((?:torghut|process|python)_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_names() -> set[str]:
    """Every sample name a fresh service exports (labelled series are all primed at start)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(sample.name for sample in family.samples)
    return names


def unknown_metrics(expressions: list[str], exported: set[str]) -> list[str]:
    unknown = set()
    for expr in expressions:
        for name in METRIC_NAME.findall(expr):
            if name not in exported:
                unknown.add(name)
    return sorted(unknown)


def rule_spec(path: Path = RULES_FILE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text("utf-8"))
    assert document["kind"] == "PrometheusRule"
    spec: dict[str, Any] = document["spec"]
    return spec


def rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


# --------------------------------------------------------------------------- names


def test_every_metric_in_the_rules_is_exported() -> None:
    exported = exported_names()
    expressions = [str(r["expr"]) for r in rules(rule_spec())]
    assert unknown_metrics(expressions, exported) == []


def test_every_metric_on_the_dashboard_is_exported() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text("utf-8"))
    assert unknown_metrics(dashboard_expressions(dashboard), exported_names()) == []


def test_the_name_check_bites() -> None:
    exported = exported_names()
    exprs = ["rate(torghut_llm_review_errors_totl[5m])", "torghut_trading_halted == 1"]
    assert unknown_metrics(exprs, exported) == ["torghut_llm_review_errors_totl"]
    # Histogram series are exported under their sample names, not the family's.
    assert unknown_metrics(["torghut_llm_review_latency_seconds_bucket"], exported) == []
    assert unknown_metrics(["torghut_llm_review_latency_seconds"], exported) != []


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text("utf-8"))
    assert dashboard["uid"] == "torghut" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    # Every alerting metric of the rules is on the dashboard too.
    on_dashboard = set(METRIC_NAME.findall(" ".join(dashboard_expressions(dashboard))))
    in_rules = set(METRIC_NAME.findall(" ".join(str(r["expr"]) for r in rules(rule_spec()))))
    assert in_rules - on_dashboard == set()


# --------------------------------------------------------------------------- alerts and tests


def test_every_alert_has_a_test_that_fires_it() -> None:
    alerts = {r["alert"] for r in rules(rule_spec()) if "alert" in r}
    tests = yaml.safe_load(RULES_TEST.read_text("utf-8"))["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    tested = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])}
    assert alerts - fired == set(), "alerts no test fires"
    assert tested - alerts == set(), "tests of alerts that do not exist"


def test_every_alert_is_labelled_and_explained() -> None:
    for rule in rules(rule_spec()):
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert rule["annotations"]["runbook"].startswith("docs/rollout.md#")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("TORGHUT_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is not installed (Debian package `prometheus`)")
        pytest.skip("promtool is not installed (apt-get install prometheus); CI runs these")
    return found


def run_promtool(
    spec: dict[str, Any], workdir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """The PrometheusRule's spec is a plain rules file; the unit tests load it by name."""
    (workdir / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")
    shutil.copy(RULES_TEST, workdir / "rules_test.yaml")
    return subprocess.run(
        [_promtool(), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_check_rules(tmp_path: Path) -> None:
    out = run_promtool(rule_spec(), tmp_path, "check", "rules", "rules.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules(rule_spec()))} rules found" in out.stdout


def test_promtool_test_rules(tmp_path: Path) -> None:
    out = run_promtool(rule_spec(), tmp_path, "test", "rules", "rules_test.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_catches_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: moving one (audit failures: any -> more than 5)
    fails them."""
    spec = copy.deepcopy(rule_spec())
    for rule in rules(spec):
        if rule.get("alert") == "TorghutAuditWriteFailures":
            rule["expr"] = str(rule["expr"]).replace("> 0", "> 5")
    out = run_promtool(spec, tmp_path, "test", "rules", "rules_test.yaml")
    assert out.returncode != 0
    assert "TorghutAuditWriteFailures" in out.stdout + out.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each panel's PromQL, posed as a recording rule."""
    dashboard = json.loads(DASHBOARD_FILE.read_text("utf-8"))
    queries = dashboard_expressions(dashboard)
    spec = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    out = run_promtool(spec, tmp_path, "check", "rules", "rules.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    broken = {"groups": [{"name": "d", "rules": [{"record": "d:q", "expr": "sum(rate(x[5m])"}]}]}
    assert run_promtool(broken, tmp_path, "check", "rules", "rules.yaml").returncode != 0
