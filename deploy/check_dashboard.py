#!/usr/bin/env python3
"""Sanity checks of the Grafana dashboard and the alert rules against src/.

    python3 deploy/check_dashboard.py            (run from the repository root)

- the dashboard is valid JSON, panel ids are unique, panels fit the 24-column
  grid without overlapping, and every data source is one that
  deploy/grafana/provisioning provides (uids `prometheus`, `loki`);
- every metric name in a PromQL expression (dashboard panels, template
  variables, deploy/prometheus/alerts.yml) is one that src/ records
  (`metrics::counter!/gauge!/histogram!("name", …)`, plus _sum/_count, and
  _bucket only for the histograms src/telemetry.rs gives buckets: the others
  are exported as summaries with a `quantile` label), or Prometheus' `up`;
- every label matched on a Dispatch metric is one src/ attaches to it (or one
  Prometheus adds: job, instance, role, le, quantile).

Exits 1 and lists the problems if any check fails. Standard library only
(PyYAML is used for alerts.yml when installed).
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy/grafana/dashboards/dispatch.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
DATASOURCE_UIDS = {"prometheus", "loki", "-- Grafana --"}
ADDED_LABELS = {"job", "instance", "role", "deployment"}

PROMQL_WORDS = {
    # aggregations, functions and keywords used (or plausible) in our queries
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values", "group", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile",
    "abs", "absent", "absent_over_time", "ceil", "floor", "round", "clamp_min",
    "clamp_max", "label_replace", "label_join", "vector", "scalar", "time",
    "sum_over_time", "avg_over_time", "max_over_time", "min_over_time",
    "count_over_time", "last_over_time", "resets", "changes", "sort", "sort_desc",
    "label_values", "inf", "nan",
}


def macro_calls(text: str):
    """(kind, name, arguments, offset) of each metrics::counter!/gauge!/histogram! call."""
    head = re.compile(r'metrics::(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
    for match in head.finditer(text):
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        yield match[1], match[2], text[match.end():end - 1], match.start()


def label_arrays(text: str) -> list[list[str]]:
    """Keys of each `let labels = [("key", …), …];` in a file, in order."""
    arrays = []
    for body in re.findall(r"let labels\s*=\s*\[(.*?)\];", text, re.S):
        arrays.append(re.findall(r'\(\s*"([a-zA-Z_][a-zA-Z0-9_]*)"\s*,', body))
    return arrays


def src_metrics() -> dict[str, set[str]]:
    """Metric name → label keys, read from the metrics macros in src/."""
    metrics: dict[str, set[str]] = {}
    telemetry = (ROOT / "src/telemetry.rs").read_text(encoding="utf-8")
    bucketed = set(re.findall(r'Matcher::Full\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', telemetry))
    for path in (ROOT / "src").rglob("*.rs"):
        text = path.read_text(encoding="utf-8")
        arrays = label_arrays(text)
        for kind, name, args, _ in macro_calls(text):
            keys = set(re.findall(r'"([a-zA-Z_][a-zA-Z0-9_]*)"\s*=>', args))
            # `&labels`, `labels`, `&labels[..2]`, `&labels[1..]`: the file's
            # `let labels = [("key", value), …]` array, sliced like the call.
            used = re.search(r"\blabels\b(?:\[(\d*)\.\.(\d*)\])?", args)
            if used:
                start = int(used[1]) if used[1] else 0
                stop = int(used[2]) if used[2] else None
                for array in arrays:
                    keys |= set(array[start:stop])
            entry = metrics.setdefault(name, set())
            entry |= keys
            if kind == "histogram":
                # metrics-exporter-prometheus renders a histogram (_bucket, le)
                # only for names given buckets in telemetry.rs, and a summary
                # (quantile label) otherwise; _sum and _count either way.
                for suffix in ("_sum", "_count"):
                    metrics.setdefault(name + suffix, set()).update(keys)
                if name in bucketed:
                    metrics.setdefault(name + "_bucket", set()).update(keys | {"le"})
                else:
                    entry.add("quantile")
    metrics["up"] = set()
    return metrics


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def check_promql(expr: str, where: str, metrics: dict[str, set[str]], problems: list[str]) -> None:
    expr = re.sub(r"\$__\w+|\$\{?\w+\}?", "1m", expr)  # Grafana variables
    bare = strip_strings(expr)
    # Label matchers of each selector: name{k="v", …}
    for name, body in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", bare):
        if name in PROMQL_WORDS:
            continue
        if name not in metrics:
            problems.append(f"{where}: unknown metric {name!r}")
            continue
        for key in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", body):
            if key not in metrics[name] and key not in ADDED_LABELS:
                problems.append(f"{where}: metric {name!r} has no label {key!r} in src/")
    # Every other identifier: drop label lists, matchers, durations, numbers.
    rest = re.sub(r"\{[^}]*\}", "", bare)
    rest = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", rest)
    rest = re.sub(r"\[[^\]]*\]", "", rest)
    for ident in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rest):
        if ident.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", ident):
            continue
        if ident not in metrics:
            problems.append(f"{where}: unknown metric or word {ident!r}")


def check_dashboard(metrics: dict[str, set[str]], problems: list[str]) -> int:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    flat = []
    for panel in panels:
        flat.append(panel)
        flat.extend(panel.get("panels", []))
    ids = [p["id"] for p in flat]
    if len(ids) != len(set(ids)):
        problems.append("dashboard: duplicate panel ids")
    cells: dict[tuple[int, int], str] = {}
    for panel in flat:
        g = panel["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"panel {panel['title']!r}: outside the 24-column grid")
        for cx in range(g["x"], g["x"] + g["w"]):
            for cy in range(g["y"], g["y"] + g["h"]):
                if (cx, cy) in cells:
                    problems.append(f"panel {panel['title']!r} overlaps {cells[(cx, cy)]!r}")
                    break
                cells[(cx, cy)] = panel["title"]
        sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
        for source in sources:
            if source and source.get("uid") not in DATASOURCE_UIDS:
                problems.append(f"panel {panel['title']!r}: unknown data source {source}")
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            if uid == "prometheus":
                check_promql(target["expr"], f"panel {panel['title']!r}", metrics, problems)
            elif uid == "loki" and "{" not in target["expr"]:
                problems.append(f"panel {panel['title']!r}: Loki query without a stream selector")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["definition"]
            inner = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            if not inner:
                problems.append(f"variable {variable['name']}: unexpected query {query!r}")
            elif inner[1] not in metrics:
                problems.append(f"variable {variable['name']}: unknown metric {inner[1]!r}")
            elif inner[2] not in metrics[inner[1]]:
                problems.append(f"variable {variable['name']}: {inner[1]!r} has no label {inner[2]!r}")
    return len(flat)


def check_alerts(metrics: dict[str, set[str]], problems: list[str]) -> int:
    try:
        import yaml  # type: ignore[import-not-found]
    except ImportError:
        print("PyYAML not installed: alerts.yml expressions not checked")
        return 0
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    count = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            count += 1
            check_promql(rule["expr"], f"alert {rule.get('alert')}", metrics, problems)
    return count


def main() -> int:
    metrics = src_metrics()
    problems: list[str] = []
    panels = check_dashboard(metrics, problems)
    rules = check_alerts(metrics, problems)
    base = sorted(m for m in metrics if not m.endswith(("_bucket", "_sum", "_count")) and m != "up")
    print(f"metrics recorded in src/: {', '.join(base)}")
    print(f"checked {panels} dashboard panels and {rules} alert rules")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
