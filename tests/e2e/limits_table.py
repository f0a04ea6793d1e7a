"""Creates the limits table in a DynamoDB endpoint (moto in the tests) from template.yaml.

The table's schema is defined once, by template.yaml's LimitsTable resource: this script reads
that resource's key schema, attribute definitions, billing mode and TTL setting instead of
restating them, so the tests' table cannot drift from the deployed one.

    limits_table.py --endpoint http://127.0.0.1:PORT --name TABLE [--template template.yaml]

Used by the Rust tests (`Moto::create_limits_table`). Exits non-zero with one line on stderr when
the template or the endpoint fails; prints the table's name and nothing else on success.
"""

import argparse
import json
import sys

import boto3
import botocore.exceptions
from cfnlint.decode import decode

# moto accepts any credentials; these are its documented dummies, always passed explicitly so
# ambient AWS credentials (a profile, the environment) are never read, sent or shown.
REGION = "us-east-1"
DUMMY_CREDENTIAL = "testing"


def fail(message):
    print(f"limits_table.py: {message}", file=sys.stderr)
    sys.exit(1)


def table_properties(template_path):
    """LimitsTable's Properties from the template, as plain dicts and lists."""
    # cfn-lint's decoder understands the short-form tags (!Ref, !GetAtt, !If) a plain YAML
    # loader rejects.
    template, problems = decode(template_path)
    if problems or template is None:
        fail(f"cannot read {template_path}: {[str(problem) for problem in problems]}")
    resource = template.get("Resources", {}).get("LimitsTable")
    if not resource or resource.get("Type") != "AWS::DynamoDB::Table":
        fail(f"{template_path} has no AWS::DynamoDB::Table named LimitsTable")
    # The decoder's nodes are dict subclasses carrying line marks; boto3 wants plain values.
    return json.loads(json.dumps(resource.get("Properties", {})))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="DynamoDB endpoint, e.g. http://127.0.0.1:5000")
    parser.add_argument("--name", required=True, help="name of the table to create")
    parser.add_argument("--template", default="template.yaml", help="the SAM template holding LimitsTable")
    args = parser.parse_args()

    properties = table_properties(args.template)
    # Exactly the properties that shape the table; any the template gains later that this script
    # does not pass on must be added here, not silently dropped.
    known = {"BillingMode", "AttributeDefinitions", "KeySchema", "TimeToLiveSpecification"}
    unknown = sorted(set(properties) - known)
    if unknown:
        fail(f"LimitsTable has properties this script does not create: {unknown}")
    missing = sorted(known - set(properties))
    if missing:
        fail(f"LimitsTable lacks {missing}")

    client = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name=REGION,
        aws_access_key_id=DUMMY_CREDENTIAL,
        aws_secret_access_key=DUMMY_CREDENTIAL,
    )
    ttl = properties["TimeToLiveSpecification"]
    try:
        client.create_table(
            TableName=args.name,
            KeySchema=properties["KeySchema"],
            AttributeDefinitions=properties["AttributeDefinitions"],
            BillingMode=properties["BillingMode"],
        )
        # A real endpoint creates tables asynchronously; TTL can only be set on an active table.
        client.get_waiter("table_exists").wait(TableName=args.name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        client.update_time_to_live(
            TableName=args.name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]},
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        # botocore's messages name the operation and the service's error code, never credentials.
        fail(f"creating table {args.name} at {args.endpoint} failed: {error}")
    print(args.name)


if __name__ == "__main__":
    main()
