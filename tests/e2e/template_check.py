"""Checks template.yaml offline, as far as anything can be checked without an AWS account.

1. cfn-lint on the SAM template as written.
2. The SAM transform (aws-sam-translator, what `sam deploy` runs server-side) into plain
   CloudFormation, with CodeUri set to an S3 location as `sam package` would; then cfn-lint on
   that output, which validates the generated Lambda, URL, role and permission resources.
3. Assertions on the properties that matter: streaming invoke mode, runtime and architecture,
   least-privilege IAM, public-URL permissions, settings passed as environment, the log group and
   its retention, a key map that survives the stack, full secret ARNs only, the limits table (its
   schema, created unless an existing one is named, UpdateItem on it alone), samconfig.toml giving
   build and deploy the same architecture, outputs, the dashboard (on unless CreateDashboard is
   false) and the alarms (only with AlarmEmail or AlarmTopicArn, and notifying the right topic).
   What the dashboard and alarms refer to is checked against the binary's own EMF records and
   log lines by tests/it/dashboard.rs (through tests/e2e/template_metrics.py).

Run by the Rust test `template_passes_cfn_lint_and_has_what_matters` with the repository root as
the working directory. Raises on the first failure; prints one line per passing check.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib

from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}")


def condition_holds(name, conditions, values):
    """Evaluates a template condition for the given parameter values (defaults elsewhere).

    The SAM transform leaves conditions to CloudFormation, so this is the only way to see what a
    deploy with a parameter set would create. Only the functions our conditions use are known;
    anything else raises rather than guessing.
    """

    def evaluate(node):
        if isinstance(node, dict) and len(node) == 1:
            [(function, argument)] = node.items()
            if function == "Fn::Equals":
                left, right = (evaluate(side) for side in argument)
                return str(left) == str(right)
            if function == "Fn::Not":
                return not evaluate(argument[0])
            if function == "Fn::And":
                return all(evaluate(part) for part in argument)
            if function == "Fn::Or":
                return any(evaluate(part) for part in argument)
            if function == "Condition":
                return evaluate(conditions[argument])
            if function == "Ref":
                return values[argument]
            raise ValueError(f"condition function {function} not understood")
        return node

    return evaluate(conditions[name])


def resolve(node, conditions, values):
    """Picks each Fn::If branch and fills Ref and Fn::Sub from `values` (parameters and pseudo
    parameters), as CloudFormation would for one deploy; other functions are left as they are."""
    if isinstance(node, list):
        return [resolve(item, conditions, values) for item in node]
    if not isinstance(node, dict):
        return node
    if list(node) == ["Fn::If"]:
        name, then, otherwise = node["Fn::If"]
        chosen = then if condition_holds(name, conditions, values) else otherwise
        return resolve(chosen, conditions, values)
    if list(node) == ["Ref"] and node["Ref"] in values:
        return values[node["Ref"]]
    if list(node) == ["Fn::Sub"] and isinstance(node["Fn::Sub"], str):
        return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: str(values[m.group(1)]), node["Fn::Sub"])
    return {key: resolve(value, conditions, values) for key, value in node.items()}


def cfn_lint(path):
    lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
    result = subprocess.run([lint, path], capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout + result.stderr


TEMPLATE = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
code, output = cfn_lint(TEMPLATE)
check(f"cfn-lint {TEMPLATE}", code == 0, output)

template, problems = decode_str(open(TEMPLATE, encoding="utf-8").read())
check("template parses", not problems, problems)
template = json.loads(json.dumps(template))
params = template["Parameters"]

# What `sam package` does to CodeUri, then the SAM transform itself.
packaged = json.loads(json.dumps(template))
packaged["Resources"]["ProxyFunction"]["Properties"]["CodeUri"] = "s3://artifacts/openai-proxy.zip"


class NoManagedPolicies:
    """The template names no managed policies, so nothing needs looking up in IAM."""

    def load(self):
        return {}


os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
cfn = transform(packaged, {}, NoManagedPolicies())
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
    json.dump(cfn, out)
code, output = cfn_lint(out.name)
os.unlink(out.name)
check("cfn-lint on the SAM-transformed template", code == 0, output)

resources = cfn["Resources"]
by_type = {}
for name, resource in resources.items():
    by_type.setdefault(resource["Type"], []).append((name, resource))

# The function.
[(_, function)] = by_type["AWS::Lambda::Function"]
fprops = function["Properties"]
check("runtime provided.al2023", fprops["Runtime"] == "provided.al2023", fprops["Runtime"])
check("handler bootstrap", fprops["Handler"] == "bootstrap", fprops["Handler"])
check("architecture is a parameter", fprops["Architectures"] == [{"Ref": "Architecture"}], fprops["Architectures"])
check(
    "arm64 by default, x86_64 allowed",
    params["Architecture"]["Default"] == "arm64" and set(params["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"},
    params["Architecture"],
)
check("cargo lambda build method", template["Resources"]["ProxyFunction"]["Metadata"]["BuildMethod"] == "rust-cargolambda")
check("timeout is a parameter", fprops["Timeout"] == {"Ref": "TimeoutSeconds"}, fprops["Timeout"])
check("timeout defaults near the 15-minute maximum", 840 <= params["TimeoutSeconds"]["Default"] <= 900, params["TimeoutSeconds"])
check("memory is a parameter", fprops["MemorySize"] == {"Ref": "MemorySize"}, fprops["MemorySize"])
check(
    "reserved concurrency is optional",
    fprops["ReservedConcurrentExecutions"]
    == {"Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]},
    fprops.get("ReservedConcurrentExecutions"),
)
logging = fprops["LoggingConfig"]
check("JSON logs", logging["LogFormat"] == "JSON", logging)
check("Lambda's START and REPORT lines kept", logging["SystemLogLevel"] == "INFO", logging)
check("application log level is a parameter", logging["ApplicationLogLevel"] == {"Ref": "LogLevel"}, logging)
[(log_group_name, log_group)] = by_type["AWS::Logs::LogGroup"]
check("logs go to the stack's log group", logging["LogGroup"] == {"Ref": log_group_name}, logging)
check(
    "the log group has a retention",
    log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} and params["LogRetentionDays"]["Default"] == 30,
    log_group,
)
check("the log group goes with the stack", log_group.get("DeletionPolicy", "Delete") == "Delete", log_group)

# Every setting the proxy reads from the environment is set by the template (local-only ones aside).
config_source = open("src/config.rs", encoding="utf-8").read()
read = set(re.findall(r'(?:get|seconds|switch)\("([A-Z_]+)"', config_source))
# LOG_FORMAT: under Lambda the template's LoggingConfig sets AWS_LAMBDA_LOG_FORMAT instead.
local_only = {"KEY_MAP_FILE", "LISTEN_ADDR", "RUST_LOG", "LOG_FORMAT"}
set_by_lambda = {name for name in read if name.startswith("AWS_LAMBDA_")}
env = fprops["Environment"]["Variables"]
check("config.rs read as expected", {"KEY_MAP_SECRET_ID", "UPSTREAM_BASE_URL", "METRICS_EMF"} <= read, read)
check("every setting is in the environment", read - local_only - set_by_lambda == set(env), (read, sorted(env)))
check(
    "the secret id is the created or the given secret",
    env["KEY_MAP_SECRET_ID"] == {"Fn::If": ["CreateSecret", {"Ref": "KeyMapSecret"}, {"Ref": "ExistingKeyMapSecretArn"}]},
    env["KEY_MAP_SECRET_ID"],
)
check(
    "the limits table is the created or the given table",
    env.get("LIMITS_TABLE")
    == {"Fn::If": ["CreateLimitsTable", {"Ref": "LimitsTable"}, {"Ref": "ExistingLimitsTableName"}]},
    env.get("LIMITS_TABLE"),
)
check(
    "what a table outage does is a parameter, allow by default",
    env.get("LIMITS_ON_STORE_ERROR") == {"Ref": "LimitsOnStoreError"}
    and params["LimitsOnStoreError"]["Default"] == "allow"
    and set(params["LimitsOnStoreError"]["AllowedValues"]) == {"allow", "deny"},
    (env.get("LIMITS_ON_STORE_ERROR"), params.get("LimitsOnStoreError")),
)
check(
    "the default output reservation is a parameter",
    env.get("LIMITS_DEFAULT_OUTPUT_TOKENS") == {"Ref": "LimitsDefaultOutputTokens"},
    env.get("LIMITS_DEFAULT_OUTPUT_TOKENS"),
)

# The function URL.
[(url_name, url)] = by_type["AWS::Lambda::Url"]
check("function URL streams", url["Properties"]["InvokeMode"] == "RESPONSE_STREAM", url)
check("function URL is public (the wrapper key is the authentication)", url["Properties"]["AuthType"] == "NONE", url)
check("no AWS_IAM option", "FunctionUrlAuthType" not in params, sorted(params))
permissions = [props for _, resource in by_type["AWS::Lambda::Permission"] for props in [resource["Properties"]]]
public = {p["Action"]: p for p in permissions if p.get("Principal") == "*"}
check(
    "public URL may invoke through the URL",
    public.get("lambda:InvokeFunctionUrl", {}).get("FunctionUrlAuthType") == "NONE",
    permissions,
)
check(
    "public lambda:InvokeFunction only via the URL",
    public.get("lambda:InvokeFunction", {}).get("InvokedViaFunctionUrl") is True,
    permissions,
)
check("exactly those two permissions", len(permissions) == 2, permissions)

# Least privilege: one inline statement for the one secret, KMS only with a customer key, Bedrock
# only on the resource the operator names (the SigV4 upstream path).
[(_, role)] = by_type["AWS::IAM::Role"]
policies = role["Properties"]["Policies"]
statements = []
for policy in policies:
    if "Fn::If" in policy and policy["Fn::If"][0] == "InvokesBedrock":
        condition, then, otherwise = policy["Fn::If"]
        check("the Bedrock policy is conditional", otherwise == {"Ref": "AWS::NoValue"}, policy)
        bedrock = then["PolicyDocument"]["Statement"]
        check(
            "bedrock:InvokeModel(WithResponseStream) on the given resource only",
            bedrock[0]["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
            and bedrock[0]["Resource"] == {"Ref": "BedrockInvokeResource"},
            bedrock,
        )
        parameter = template["Parameters"]["BedrockInvokeResource"]
        check("no Bedrock permission by default", parameter["Default"] == "", parameter)
    elif "Fn::If" in policy:
        condition, then, otherwise = policy["Fn::If"]
        check("the KMS policy is conditional", condition == "HasKmsKey" and otherwise == {"Ref": "AWS::NoValue"}, policy)
        kms = then["PolicyDocument"]["Statement"]
        check(
            "kms:Decrypt on the given key, via Secrets Manager only",
            kms[0]["Action"] == "kms:Decrypt"
            and kms[0]["Resource"] == {"Ref": "KeyMapKmsKeyArn"}
            and "kms:ViaService" in kms[0]["Condition"]["StringEquals"],
            kms,
        )
    else:
        statements.extend(policy["PolicyDocument"]["Statement"])
check("two unconditional statements", len(statements) == 2, statements)
check(
    "GetSecretValue on the key map secret only",
    statements[0]["Action"] == "secretsmanager:GetSecretValue"
    and statements[0]["Resource"] == env["KEY_MAP_SECRET_ID"],
    statements,
)
# Limits: one conditional UpdateItem per admission and settlement, so nothing else on DynamoDB,
# and only on the one table the function is told to use.
limits_statement = statements[1]
check(
    "dynamodb:UpdateItem on the limits table only",
    limits_statement["Action"] == "dynamodb:UpdateItem"
    and limits_statement["Resource"]
    == {
        "Fn::If": [
            "CreateLimitsTable",
            {"Fn::GetAtt": ["LimitsTable", "Arn"]},
            {
                "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${ExistingLimitsTableName}"
            },
        ]
    },
    limits_statement,
)
# Every action granted anywhere in the role, conditional policies included.
granted = set(re.findall(r'"([a-z0-9-]+:[A-Za-z*]+)"', json.dumps(policies)))
dynamodb_actions = sorted(action for action in granted if action.startswith("dynamodb:"))
check("no DynamoDB action but UpdateItem", dynamodb_actions == ["dynamodb:UpdateItem"], sorted(granted))
managed = role["Properties"].get("ManagedPolicyArns", [])
check(
    "no managed policy beyond basic logging",
    managed == ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
    managed,
)
check("nothing is granted on *", "*" not in json.dumps(policies).replace('"Principal": "*"', ""), policies)

# The secret, created only when none is given.
[(secret_name, secret)] = by_type["AWS::SecretsManager::Secret"]
check("the secret is created only when none is given", secret.get("Condition") == "CreateSecret", secret)
check("the created secret starts as an empty key map", secret["Properties"]["SecretString"] == "{}", secret)
check(
    "the key map survives sam delete and replacement",
    secret.get("DeletionPolicy") == "Retain" and secret.get("UpdateReplacePolicy") == "Retain",
    secret,
)

# The limits table: its schema is defined here once (tests/e2e/limits_table.py creates the tests'
# table from this resource), on demand and with TTL, created only when no existing table is named.
limits_table = resources.get("LimitsTable", {})
table = limits_table.get("Properties", {})
check("the limits table is a DynamoDB table", limits_table.get("Type") == "AWS::DynamoDB::Table", limits_table)
check(
    "the limits table is keyed by a string pk alone",
    table.get("KeySchema") == [{"AttributeName": "pk", "KeyType": "HASH"}]
    and table.get("AttributeDefinitions") == [{"AttributeName": "pk", "AttributeType": "S"}],
    table,
)
check("the limits table is on demand", table.get("BillingMode") == "PAY_PER_REQUEST", table)
check(
    "expired windows delete themselves (TTL on expires_at)",
    table.get("TimeToLiveSpecification") == {"AttributeName": "expires_at", "Enabled": True},
    table,
)
# A fixed name would stop a second stack in the account and a replacement of this one.
check("the limits table name is generated", "TableName" not in table, table)
check("the limits table is created only when none is given", limits_table.get("Condition") == "CreateLimitsTable", limits_table)
check("the table is created by default", params["ExistingLimitsTableName"]["Default"] == "", params["ExistingLimitsTableName"])

# What one deploy with an existing table gets: no table, and the name and the grant point at it.
conditions = cfn["Conditions"]
defaults = {name: parameter.get("Default") for name, parameter in params.items()}
pseudo = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}
existing = {**defaults, **pseudo, "ExistingLimitsTableName": "shared-limits"}
check("by default the limits table is created", condition_holds("CreateLimitsTable", conditions, {**defaults, **pseudo}))
check(
    "with ExistingLimitsTableName the limits table is not created",
    not condition_holds("CreateLimitsTable", conditions, existing),
    conditions["CreateLimitsTable"],
)
check(
    "with ExistingLimitsTableName the function uses that table",
    resolve(env["LIMITS_TABLE"], conditions, existing) == "shared-limits",
    env["LIMITS_TABLE"],
)
check(
    "with ExistingLimitsTableName UpdateItem is granted on that table",
    resolve(limits_statement["Resource"], conditions, existing)
    == "arn:aws:dynamodb:eu-west-1:123456789012:table/shared-limits",
    limits_statement,
)
# The name goes into the grant's ARN: a wildcard would widen it to every table.
table_name_pattern = re.compile(params["ExistingLimitsTableName"]["AllowedPattern"])
check("an existing table name is accepted", table_name_pattern.fullmatch("shared-limits"))
check("no table name (create the table) is accepted", table_name_pattern.fullmatch(""))
check("a wildcard table name is refused", not table_name_pattern.fullmatch("*"))
check("a table ARN path is refused", not table_name_pattern.fullmatch("t/index/x"))

# An existing secret only by its full ARN: the IAM statement names the ARN, and a partial one
# (without the 6-character suffix Secrets Manager adds) would not match it at run time.
arn_pattern = re.compile(params["ExistingKeyMapSecretArn"]["AllowedPattern"])
full = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:openai-proxy/keys-AbC123"
partial = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:openai-proxy/keys"
check("a full secret ARN is accepted", arn_pattern.fullmatch(full), full)
check("a partial secret ARN is refused", not arn_pattern.fullmatch(partial), partial)
check("no ARN (create the secret) is accepted", arn_pattern.fullmatch(""))

# sam build and sam deploy read the architecture from the same place.
samconfig = tomllib.load(open("samconfig.toml", "rb"))
overrides = samconfig["default"]["global"]["parameters"]["parameter_overrides"]
check("samconfig.toml sets the architecture for build and deploy alike", "Architecture=" in overrides, samconfig)
for command in ("build", "deploy"):
    section = samconfig["default"].get(command, {}).get("parameters", {})
    check(f"samconfig.toml: no {command}-only parameters", "parameter_overrides" not in section, section)

# Outputs.
outputs = cfn["Outputs"]
check("outputs the function URL", outputs["FunctionUrl"]["Value"] == {"Fn::GetAtt": [url_name, "FunctionUrl"]}, outputs)
check(
    "outputs the SDK base_url",
    outputs["OpenAIBaseUrl"]["Value"] == {"Fn::Sub": "${" + url_name + ".FunctionUrl}v1"},
    outputs["OpenAIBaseUrl"],
)
check("outputs the secret", "KeyMapSecretArn" in outputs, outputs)
check("outputs the limits table", outputs.get("LimitsTableName", {}).get("Value") == env["LIMITS_TABLE"], outputs)
# The dashboard: on by default, off with CreateDashboard=false, a JSON body of widgets.
base = {**defaults, **pseudo, "AWS::StackName": "openai-proxy"}
dashboard = resources.get("ProxyDashboard", {})
check("the dashboard is a CloudWatch dashboard", dashboard.get("Type") == "AWS::CloudWatch::Dashboard", dashboard)
check("the dashboard is created under WithDashboard", dashboard.get("Condition") == "WithDashboard", dashboard)
check("the dashboard is created by default", condition_holds("WithDashboard", conditions, base))
check(
    "CreateDashboard=false creates no dashboard",
    not condition_holds("WithDashboard", conditions, {**base, "CreateDashboard": "false"}),
    conditions["WithDashboard"],
)
named = {**base, "ProxyFunction": "openai-proxy-fn", "ProxyLogGroup": "/aws/lambda/openai-proxy-openai-proxy"}
widgets = json.loads(resolve(dashboard["Properties"]["DashboardBody"], conditions, named))["widgets"]
check("the dashboard body is JSON with widgets", len(widgets) >= 10, widgets)
log_widgets = [widget["properties"]["query"] for widget in widgets if widget["type"] == "log"]
check(
    "the dashboard's Logs Insights widgets read the function's log group",
    log_widgets and all(query.startswith("SOURCE '/aws/lambda/openai-proxy-openai-proxy' |") for query in log_widgets),
    log_widgets,
)
check(
    "the dashboard's metrics are in the MetricsNamespace parameter's namespace",
    "${MetricsNamespace}" in dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    and '\\"openai-proxy\\"' not in dashboard["Properties"]["DashboardBody"]["Fn::Sub"],
)
check(
    "outputs the dashboard's URL when there is a dashboard",
    outputs.get("DashboardUrl", {}).get("Condition") == "WithDashboard"
    and "${ProxyDashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"],
    outputs.get("DashboardUrl"),
)

# The alarms: none without someone to tell; a topic of the stack's own for an e-mail address; an
# existing topic instead when its ARN is given.
alarms = dict(by_type.get("AWS::CloudWatch::Alarm", []))
check(
    "the four alarms",
    set(alarms) == {"Proxy5xxRateAlarm", "KeyMapLoadFailuresAlarm", "FunctionErrorsAlarm", "TenantThrottledAlarm"},
    sorted(alarms),
)
check("every alarm is under WithAlarms", all(alarm.get("Condition") == "WithAlarms" for alarm in alarms.values()), alarms)
check(
    "no data is no alarm",
    all(alarm["Properties"].get("TreatMissingData") == "notBreaching" for alarm in alarms.values()),
)
topic = resources.get("AlarmTopic", {})
check("the stack's alarm topic is created under CreateAlarmTopic", topic.get("Condition") == "CreateAlarmTopic", topic)
check(
    "the stack's alarm topic e-mails AlarmEmail",
    topic["Properties"]["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}],
    topic,
)
email = {**base, "AlarmEmail": "ops@example.com"}
topic_arn = "arn:aws:sns:eu-west-1:123456789012:ops-alarms"
existing_topic = {**base, "AlarmTopicArn": topic_arn}
both = {**email, "AlarmTopicArn": topic_arn}
check("no alarm by default (no e-mail address, no topic)", not condition_holds("WithAlarms", conditions, base))
check("no alarm topic by default", not condition_holds("CreateAlarmTopic", conditions, base))


def notified(values):
    """The (alarm, ok) actions of every alarm for one deploy."""
    return {
        (json.dumps(resolve(alarm["Properties"]["AlarmActions"], conditions, values)),
         json.dumps(resolve(alarm["Properties"]["OKActions"], conditions, values)))
        for alarm in alarms.values()
    }


to_own_topic = json.dumps([{"Ref": "AlarmTopic"}])
to_given_topic = json.dumps([topic_arn])
check(
    "with AlarmEmail the alarms tell the stack's topic, which e-mails it",
    condition_holds("WithAlarms", conditions, email)
    and condition_holds("CreateAlarmTopic", conditions, email)
    and notified(email) == {(to_own_topic, to_own_topic)},
    notified(email),
)
check(
    "with AlarmTopicArn the alarms tell that topic, and no topic is created",
    condition_holds("WithAlarms", conditions, existing_topic)
    and not condition_holds("CreateAlarmTopic", conditions, existing_topic)
    and notified(existing_topic) == {(to_given_topic, to_given_topic)},
    notified(existing_topic),
)
check(
    "with both, AlarmTopicArn wins",
    not condition_holds("CreateAlarmTopic", conditions, both) and notified(both) == {(to_given_topic, to_given_topic)},
    notified(both),
)
email_pattern = re.compile(params["AlarmEmail"]["AllowedPattern"])
check("an e-mail address is accepted", email_pattern.fullmatch("ops@example.com"))
check("no e-mail address is accepted", email_pattern.fullmatch(""))
check("a non-address is refused", not email_pattern.fullmatch("ops at example"))
topic_pattern = re.compile(params["AlarmTopicArn"]["AllowedPattern"])
check("a topic ARN is accepted", topic_pattern.fullmatch(topic_arn))
check("a FIFO topic (alarms cannot use one) is refused", not topic_pattern.fullmatch(topic_arn + ".fifo"))

# What each alarm watches, and the thresholds it takes from parameters.
rate = alarms["Proxy5xxRateAlarm"]["Properties"]
check(
    "the 5xx alarm is Errors5xx over Requests, in percent, against Alarm5xxRatePercent",
    [query.get("Expression") for query in rate["Metrics"] if query.get("ReturnData")] == ["100 * errors / requests"]
    and sorted(query["MetricStat"]["Metric"]["MetricName"] for query in rate["Metrics"] if "MetricStat" in query) == ["Errors5xx", "Requests"]
    and all("Dimensions" not in query["MetricStat"]["Metric"] for query in rate["Metrics"] if "MetricStat" in query)
    and rate["Threshold"] == {"Ref": "Alarm5xxRatePercent"},
    rate,
)
key_map = alarms["KeyMapLoadFailuresAlarm"]["Properties"]
check(
    "the key map alarm: KeyMapLoadFailures >= 1, no dimensions, in MetricsNamespace",
    key_map["MetricName"] == "KeyMapLoadFailures"
    and "Dimensions" not in key_map
    and key_map["Namespace"] == {"Ref": "MetricsNamespace"}
    and key_map["Threshold"] == 1
    and key_map["ComparisonOperator"] == "GreaterThanOrEqualToThreshold",
    key_map,
)
function_alarm = alarms["FunctionErrorsAlarm"]["Properties"]
watched = sorted(query["MetricStat"]["Metric"]["MetricName"] for query in function_alarm["Metrics"] if "MetricStat" in query)
check(
    "the function alarm: AWS/Lambda Errors and Throttles of this function, against AlarmFunctionErrors",
    watched == ["Errors", "Throttles"]
    and all(
        query["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "ProxyFunction"}}]
        for query in function_alarm["Metrics"]
        if "MetricStat" in query
    )
    and function_alarm["Threshold"] == {"Ref": "AlarmFunctionErrors"},
    function_alarm,
)
throttled = alarms["TenantThrottledAlarm"]["Properties"]
check(
    "the tenant alarm: the proxy-wide Throttled, in every one of AlarmTenantThrottledMinutes minutes",
    throttled["MetricName"] == "Throttled"
    and "Dimensions" not in throttled
    and throttled["Namespace"] == {"Ref": "MetricsNamespace"}
    and throttled["Period"] == 60
    and throttled["EvaluationPeriods"] == {"Ref": "AlarmTenantThrottledMinutes"}
    and throttled["DatapointsToAlarm"] == {"Ref": "AlarmTenantThrottledMinutes"},
    throttled,
)
print("template checks passed", file=sys.stderr)
