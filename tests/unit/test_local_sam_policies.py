"""Each function's role, as the local stack reads it from the template, is the role SAM
builds: policy templates expanded, managed policies attached, intrinsics resolved."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from infra.local.template import Resolver, TemplateError, load_template, read_template
from infra.local.template.policies import IMPLIED_MANAGED_POLICIES, SAM_POLICY_TEMPLATES, expand_policy_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
IAM_FIXTURE = REPO / "tests" / "fixtures" / "local_iam" / "template.yaml"
SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"
SAM_TEMPLATES = sorted(REPO.glob(".venv-sam/lib/python*/site-packages/samtranslator/"
                                 "policy_templates_data/policy_templates.json"))
needs_sam = pytest.mark.skipif(not SAM_PYTHON.exists() or not SAM_TEMPLATES,
                               reason="aws-sam-translator (.venv-sam) is not installed")

BASIC = IMPLIED_MANAGED_POLICIES["AWSLambdaBasicExecutionRole"]
XRAY = IMPLIED_MANAGED_POLICIES["AWSXrayWriteOnlyAccess"]
SQS_EVENT = IMPLIED_MANAGED_POLICIES["AWSLambdaSQSQueueExecutionRole"]


@needs_sam
def test_the_copied_policy_templates_are_sams_own():
    published = json.loads(SAM_TEMPLATES[0].read_text())["Templates"]
    for name, ours in SAM_POLICY_TEMPLATES.items():
        assert ours["Definition"] == published[name]["Definition"], name
        assert set(ours["Parameters"]) == set(published[name]["Parameters"]), name


# What `sam deploy` would create: SAM's own translation of the template, in .venv-sam.
_TRANSLATE = textwrap.dedent("""
    import json, sys
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicyLookups:
        def load(self):
            return {}

    template = yaml_parse(open(sys.argv[1]).read())
    for node in [*template["Resources"].values(), {"Properties": (template.get("Globals") or {}).get("Function")}]:
        for key in ("CodeUri", "ContentUri"):  # as `sam package` leaves them
            if key in (node.get("Properties") or {}):
                node["Properties"][key] = "s3://bucket/key"
    resources = transform(template, {}, NoManagedPolicyLookups())["Resources"]
    print(json.dumps({logical_id[:-len("Role")]: resource["Properties"] for logical_id, resource in resources.items()
                      if resource["Type"] == "AWS::IAM::Role"}))
""")


def sam_roles(template: Path) -> dict:
    result = subprocess.run([str(SAM_PYTHON), "-c", _TRANSLATE, str(template)], capture_output=True, text=True,
                            timeout=120, env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@needs_sam
@pytest.mark.parametrize("template", [TEMPLATE, IAM_FIXTURE], ids=["template.yaml", "local_iam fixture"])
def test_every_functions_policies_are_the_role_sam_translates_them_to(template):
    model = load_template(template)
    resolver = Resolver(read_template(template), stack_name=model.stack_name, region=model.region,
                        account_id=model.account_id, parameters=model.parameters, sqs_endpoint=None)
    roles = sam_roles(template)  # the functions' roles, and a Scheduler role per ScheduleV2 event

    assert set(model.functions) <= set(roles)
    for logical_id in model.functions:
        role = roles[logical_id]
        inline = [resolver.resolve(policy["PolicyDocument"]) for policy in role.get("Policies", [])]
        managed = [IMPLIED_MANAGED_POLICIES[arn.rsplit("/", 1)[1]] for arn in role["ManagedPolicyArns"]]
        assert list(model.functions[logical_id].policies) == inline + managed, logical_id


def test_the_real_templates_policy_templates_expand_to_arns_of_its_resources():
    model = load_template(TEMPLATE)
    order_webhook = model.functions["OrderWebhookFunction"].policies
    secret, ssm_read, send_jobs = order_webhook[1:4]

    assert secret == {"Statement": [{"Action": ["secretsmanager:GetSecretValue"], "Effect": "Allow",
                                     "Resource": model.secrets["ProviderSecrets"].arn}]}
    assert ssm_read["Statement"][1]["Resource"] == (
        "arn:aws:ssm:us-east-1:123456789012:parameter/loyalty-local-RulesParameter")
    assert send_jobs["Statement"][0] == {"Action": ["sqs:SendMessage*"], "Effect": "Allow",
                                         "Resource": model.queues["ReminderJobsQueue"].arn}
    assert order_webhook[4:] == (BASIC, XRAY)  # Tracing: Active in Globals, no SQS event


def test_expiry_scan_may_query_its_index_and_the_table():
    policies = load_template(TEMPLATE).functions["ExpiryScanFunction"].policies
    statements = [statement for policy in policies for statement in policy["Statement"]]
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/loyalty-local-LoyaltyTable"
    queried = [s["Resource"] for s in statements if "dynamodb:Query" in s["Action"]]
    assert queried == [f"{table}/index/ExpiryIndex", table]


def test_an_sqs_event_brings_the_managed_policy_its_poller_uses():
    functions = load_template(TEMPLATE).functions
    assert SQS_EVENT in functions["DispatcherFunction"].policies
    assert SQS_EVENT in functions["SendSmsFunction"].policies
    assert SQS_EVENT not in functions["ReminderScanFunction"].policies


def test_expansion_replaces_only_the_templates_own_parameters():
    expanded = expand_policy_template("DynamoDBReadPolicy", {"TableName": {"Ref": "Table"}, "Unused": "x"})
    assert expanded["Statement"][0]["Resource"][1] == {"Fn::Sub": [
        "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}/index/*",
        {"tableName": {"Ref": "Table"}}]}
    with pytest.raises(TemplateError, match="QueueName"):
        expand_policy_template("SQSPollerPolicy", {})


SMALL = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Env: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
Resources:
  Jobs:
    Type: AWS::SQS::Queue
  Table:
    Type: AWS::DynamoDB::Table
    Properties: {TableName: !Sub "${Env}-table"}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: app.handler
      Tracing: Disabled
      Policies:
        - AmazonDynamoDBReadOnlyAccess
        - arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole
        - !If [IsProd, {SQSPollerPolicy: {QueueName: !GetAtt Jobs.QueueName}}, !Ref AWS::NoValue]
        - !If [IsProd, !Ref AWS::NoValue, {DynamoDBCrudPolicy: {TableName: !Ref Table}}]
"""


def test_managed_policies_conditions_and_tracing_disabled(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text(SMALL)
    readonly, basic, crud, implied_basic = load_template(path).functions["Fn"].policies

    assert "dynamodb:Query" in json.dumps(readonly)  # moto's copy of the AWS managed policy
    assert basic == implied_basic == BASIC
    assert crud["Statement"][0]["Resource"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/dev-table",
                                                "arn:aws:dynamodb:us-east-1:123456789012:table/dev-table/index/*"]
    prod = load_template(path, parameter_overrides={"Env": "prod"}).functions["Fn"].policies
    assert prod[2]["Statement"][0]["Resource"] == "arn:aws:sqs:us-east-1:123456789012:loyalty-local-Jobs"


@pytest.mark.parametrize("policy, problem", [
    ("{NoSuchPolicyTemplate: {}}", "not a policy template the local stack knows"),
    ("NoSuchManagedPolicy", "no AWS managed policy"),
    ("arn:aws:iam::123456789012:policy/mine", "customer managed"),
])
def test_what_cannot_be_read_is_an_error_naming_it(tmp_path, policy, problem):
    path = tmp_path / "template.yaml"
    path.write_text("Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n"
                    "    Type: AWS::Serverless::Function\n"
                    f"    Properties: {{CodeUri: ., Handler: app.handler, Policies: [{policy}]}}\n")
    with pytest.raises(TemplateError, match=problem):
        load_template(path)


def test_a_failure_destination_is_in_the_role_as_sam_puts_it():
    functions = load_template(TEMPLATE).functions
    dlq = "arn:aws:sqs:us-east-1:123456789012:loyalty-local-ScheduledRunsDLQ"
    first = functions["ReleaseDeferredFunction"].policies[0]["Statement"]
    assert first == [{"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": dlq}]
    assert all(dlq not in str(policy) for policy in functions["OrderWebhookFunction"].policies)
