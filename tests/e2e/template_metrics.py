"""Prints, as JSON, every metric and every Logs Insights field template.yaml's dashboard and alarms
refer to, for tests/it/dashboard.rs to check against what the binary really writes.

Usage: template_metrics.py NAMESPACE [TEMPLATE]. `${MetricsNamespace}` is read as NAMESPACE (the
test runs the binary with that namespace, so a hard-coded namespace in the template fails it);
the other substitutions get placeholder values. Output:

  {"metrics": [{"where", "namespace", "name", "dimensions": [sorted names]}, ...],
   "log_fields": [{"where", "field"}, ...]}

Anything not understood (a metric-array shorthand, a query form not parsed here, an unknown
substitution) raises rather than being skipped, so no reference escapes the check.
"""

import json
import re
import sys

from cfnlint.decode import decode_str

NAMESPACE = sys.argv[1]
TEMPLATE = sys.argv[2] if len(sys.argv) > 2 else "template.yaml"
VALUES = {
    "MetricsNamespace": NAMESPACE,
    "AWS::Region": "us-east-1",
    "AWS::StackName": "openai-proxy",
    "ProxyFunction": "openai-proxy-ProxyFunction",
    "ProxyLogGroup": "/aws/lambda/openai-proxy-openai-proxy",
}

SEARCH = re.compile(r"""SEARCH\('\{([^}]*)\}\s+MetricName="([^"]+)"'""")
SELECT = re.compile(r"""SELECT\s+[A-Z]+\((\w+)\)\s+FROM\s+SCHEMA\(([^)]*)\)""")
LOGS_KEYWORDS = {
    "fields", "display", "filter", "stats", "sort", "limit", "dedup", "by", "as", "and", "or",
    "not", "in", "like", "asc", "desc",
}


def substitute(node):
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and list(node) == ["Ref"]:
        return VALUES[node["Ref"]]
    if isinstance(node, dict) and list(node) == ["Fn::Sub"] and isinstance(node["Fn::Sub"], str):
        return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: VALUES[m.group(1)], node["Fn::Sub"])
    raise ValueError(f"cannot resolve {node!r}")


def schema(parts):
    """`"namespace", dim, dim` (a SEARCH or SCHEMA list) as (namespace, sorted dimensions)."""
    names = [part.strip().strip('"') for part in parts.split(",")]
    return names[0], sorted(names[1:])


def expression_metrics(expression):
    """The (namespace, name, dimensions) of each SEARCH and Metrics Insights query in an
    expression; metric math over ids refers to no metric itself."""
    found = []
    for parts, name in SEARCH.findall(expression):
        namespace, dimensions = schema(parts)
        found.append((namespace, name, dimensions))
    for name, parts in SELECT.findall(expression):
        namespace, dimensions = schema(parts)
        found.append((namespace, name, dimensions))
    expected = expression.count("SEARCH(") + expression.count("SELECT ")
    if len(found) != expected:
        raise ValueError(f"expression not understood: {expression}")
    return found


def log_fields(query):
    """The log fields a Logs Insights query reads: every identifier but commands, keywords,
    functions, aliases, string and number literals and @-fields (Logs Insights' own)."""
    query = re.sub(r"^\s*SOURCE\s+'[^']*'\s*\|", "", query)
    query = re.sub(r'"[^"]*"|\'[^\']*\'', " ", query)
    fields = re.findall(r"`([^`]+)`", query)
    query = re.sub(r"`[^`]+`", " ", query)
    query = re.sub(r"\bas\s+\w+", " ", query)
    query = re.sub(r"\b\w+\s*\(", " ", query)
    for token in re.findall(r"@?[A-Za-z_][A-Za-z0-9_.]*", query):
        if not token.startswith("@") and token not in LOGS_KEYWORDS:
            fields.append(token)
    return fields


template, problems = decode_str(open(TEMPLATE, encoding="utf-8").read())
if problems:
    raise SystemExit(f"{TEMPLATE} does not parse: {problems}")
template = json.loads(json.dumps(template))
resources = template["Resources"]
metrics = []
fields = []


def add(where, namespace, name, dimensions):
    metrics.append({"where": where, "namespace": namespace, "name": name, "dimensions": sorted(dimensions)})


dashboards = [(n, r) for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Dashboard"]
for resource_name, dashboard in dashboards:
    body = json.loads(substitute(dashboard["Properties"]["DashboardBody"]))
    for widget in body["widgets"]:
        where = f"{resource_name}: {widget['properties'].get('title', widget['type'])}"
        if widget["type"] == "log":
            fields.extend({"where": where, "field": field} for field in log_fields(widget["properties"]["query"]))
            continue
        if widget["type"] != "metric":
            continue
        for entry in widget["properties"]["metrics"]:
            if isinstance(entry[0], dict):
                for found in expression_metrics(entry[0]["expression"]):
                    add(where, *found)
                continue
            plain = [item for item in entry if not isinstance(item, dict)]
            if "." in plain or len(plain) % 2:
                raise ValueError(f"{where}: metric shorthand not understood: {entry}")
            add(where, plain[0], plain[1], plain[2::2])

alarms = [(n, r) for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"]
for resource_name, alarm in alarms:
    properties = alarm["Properties"]
    if "MetricName" in properties:
        dimensions = [dimension["Name"] for dimension in properties.get("Dimensions", [])]
        add(resource_name, substitute(properties["Namespace"]), properties["MetricName"], dimensions)
    for query in properties.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dimensions = [dimension["Name"] for dimension in metric.get("Dimensions", [])]
            add(resource_name, substitute(metric["Namespace"]), metric["MetricName"], dimensions)
        else:
            for found in expression_metrics(substitute(query["Expression"])):
                add(resource_name, *found)

print(json.dumps({"metrics": metrics, "log_fields": fields}, indent=1))
