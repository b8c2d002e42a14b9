"""The alerts, the dashboard and their documentation, against the metric names.

The metric names are a contract with the code that serves them; an alert or
a panel reading a name outside it would stay silent for ever, so every name
the chart uses must be one of these.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.charts import CHART, Helm, Manifest, find

METRICS = {
    "tm_http_requests_total": {"route", "method", "status"},
    "tm_http_request_duration_seconds": {"route", "method"},
    "tm_cache_requests_total": {"view", "result"},
    "tm_rate_limit_rejections_total": {"scope"},
    "tm_reminders_scheduled_total": {"channel"},
    "tm_reminders_sent_total": {"channel"},
    "tm_reminders_failed_total": {"channel", "reason"},
    "tm_reminders_cancelled_total": {"channel"},
    "tm_delivery_lateness_seconds": {"channel"},
    "tm_consumer_lag": {"topic", "partition"},
}
HISTOGRAMS = {"tm_http_request_duration_seconds", "tm_delivery_lateness_seconds"}
# Labels Prometheus adds to every series it scrapes, and the buckets' own.
TARGET_LABELS = {"namespace", "job", "le"}
DASHBOARD = json.loads(
    (CHART / "files" / "dashboards" / "time-manager.json").read_text()
)
CHART_README = (CHART / "README.md").read_text()


def metric_names(expression: str) -> set[str]:
    """The metrics an expression reads; a histogram's series by its name."""
    names = set()
    for name in re.findall(r"\btm_[a-z_]+", expression):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        names.add(base if base in HISTOGRAMS else name)

    return names


def label_names(expression: str) -> set[str]:
    selectors = re.findall(r"\{([^}]*)\}", expression)
    by = re.findall(r"\bby \(([^)]*)\)", expression)
    names = {
        match
        for selector in selectors
        for match in re.findall(r"(\w+)\s*(?:=~|!=|=)", selector)
    }
    names |= {name.strip() for group in by for name in group.split(",")}
    return names


def rules(production_manifests: list[Manifest]) -> dict[str, dict[str, object]]:
    rule = find(production_manifests, "PrometheusRule")
    [group] = rule["spec"]["groups"]
    return {entry["alert"]: entry for entry in group["rules"]}


def dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
    ]


# ------------------------------------------------------------------ alerts


@pytest.mark.parametrize(
    ("alert", "metrics", "threshold"),
    [
        ("TimeManagerApiErrorRateHigh", {"tm_http_requests_total"}, "> 0.05"),
        (
            "TimeManagerReminderFailuresHigh",
            {"tm_reminders_failed_total", "tm_reminders_sent_total"},
            "> 0.1",
        ),
        ("TimeManagerRemindersDelayed", {"tm_delivery_lateness_seconds"}, "> 300"),
        (
            "TimeManagerApiLatencyHigh",
            {"tm_http_request_duration_seconds"},
            "> 0.5",
        ),
        ("TimeManagerCacheHitRateLow", {"tm_cache_requests_total"}, "< 0.8"),
    ],
)
def test_each_alert_of_the_design_reads_its_metric_at_its_threshold(
    production_manifests: list[Manifest],
    alert: str,
    metrics: set[str],
    threshold: str,
) -> None:
    entry = rules(production_manifests)[alert]
    expression = str(entry["expr"])

    assert metric_names(expression) == metrics
    assert expression.rstrip().endswith(threshold)
    # This release's series only, and its runbook is in the chart README.
    assert 'namespace="time-manager"' in expression
    assert re.search(r'job="tm-time-manager-(service|streams)"', expression)
    assert f"| {alert} |" in CHART_README
    assert alert in str(entry["annotations"])


def test_the_alerts_are_exactly_the_designs_five(
    production_manifests: list[Manifest],
) -> None:
    found = rules(production_manifests)

    assert len(found) == 5
    severities = {name: entry["labels"] for name, entry in found.items()}
    assert sum(s == {"severity": "critical"} for s in severities.values()) == 3


@pytest.fixture
def helm_prometheus_rule(helm: Helm) -> Manifest:
    manifests = helm.template(
        values={
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "apiErrorRatio": 0.02,
                    "deliveryLatenessSeconds": 120,
                }
            }
        }
    )
    return find(manifests, "PrometheusRule")


def test_alert_thresholds_follow_the_values(helm_prometheus_rule: Manifest) -> None:
    [group] = helm_prometheus_rule["spec"]["groups"]
    by_name = {entry["alert"]: entry["expr"] for entry in group["rules"]}

    assert by_name["TimeManagerApiErrorRateHigh"].rstrip().endswith("> 0.02")
    assert by_name["TimeManagerRemindersDelayed"].rstrip().endswith("> 120")


# --------------------------------------------------------------- dashboard


def test_the_dashboard_shows_what_an_operator_needs_at_a_glance() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_expressions()))
    titles = " ".join(panel["title"] for panel in DASHBOARD["panels"]).lower()

    assert {
        "tm_http_requests_total",
        "tm_http_request_duration_seconds",
        "tm_reminders_scheduled_total",
        "tm_reminders_sent_total",
        "tm_reminders_failed_total",
        "tm_delivery_lateness_seconds",
        "tm_consumer_lag",
    } <= used
    for words in ("requests", "latency", "lateness", "lag", "failed"):
        assert words in titles


def test_panels_do_not_overlap_and_read_the_chosen_data_source() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        box = panel["gridPos"]
        covered = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not covered & cells, panel["title"]
        cells |= covered
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"


# ---------------------------------------------------------- the contract


def test_every_metric_and_label_the_chart_reads_is_in_the_contract(
    production_manifests: list[Manifest],
) -> None:
    expressions = dashboard_expressions() + [
        str(entry["expr"]) for entry in rules(production_manifests).values()
    ]

    for expression in expressions:
        names = metric_names(expression)
        assert names <= set(METRICS), expression
        allowed = set().union(*(METRICS[name] for name in names)) | TARGET_LABELS
        assert label_names(expression) <= allowed, expression


def test_the_chart_readme_lists_the_contract() -> None:
    for name in METRICS:
        assert f"`{name}`" in CHART_README
