"""The local stack reads template.yaml as CloudFormation and SAM would, and builds
the emulated resources from it."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from infra.local.resources import create_resources
from infra.local.runtime import EnvironmentConflict, function_environment
from infra.local.template import ApiEvent, SqsEvent, TemplateError, load_template
from infra.local.testing import start_emulator

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"


def test_globals_apply_to_every_function_and_the_function_wins():
    model = load_template(TEMPLATE)

    order_webhook = model.functions["OrderWebhookFunction"]
    expiry_scan = model.functions["ExpiryScanFunction"]
    assert order_webhook.timeout == 10 and expiry_scan.timeout == 900
    assert order_webhook.memory_size == 512
    assert order_webhook.layer_dirs == (REPO / "layers" / "common",)
    assert order_webhook.code_dir == REPO / "functions" / "order_webhook"
    assert order_webhook.environment.items() >= {
        "TABLE_NAME": "loyalty-local-LoyaltyTable",
        "SECRETS_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:loyalty-local-ProviderSecrets",
        "RULES_PARAMETER": "loyalty-local-RulesParameter",
        "PROGRAM_TIMEZONE": "Asia/Shanghai",
        "EXPIRY_INDEX_SHARDS": "4",
        "POWERTOOLS_SERVICE_NAME": "loyalty",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }.items()


def test_events_of_the_real_template_are_read():
    model = load_template(TEMPLATE)

    routes = {(e.method, e.path, e.stage): e
              for f in model.functions.values() for e in f.events_of(ApiEvent)}
    assert routes[("POST", "/webhooks/orders", "$default")].authorizer is None
    consent = routes[("PUT", "/members/{member_id}/consents/{channel}", "$default")]
    assert consent.kind == "HttpApi" and consent.scopes == ("loyalty/members.write",)
    pool = model.token_clients["BackendClient"]
    assert consent.authorizer.issuer.startswith("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_")
    assert pool.client_id in consent.authorizer.audience and consent.authorizer.header == "Authorization"
    assert set(model.scopes) == {"loyalty/members.read", "loyalty/members.write", "loyalty/ops.read",
                                 "loyalty/ops.write"}
    (nightly,) = model.functions["ExpiryScanFunction"].events
    assert nightly.kind == "ScheduleV2"
    assert nightly.timezone == "Asia/Shanghai"
    assert json.loads(nightly.input) == {"time": "<aws.scheduler.scheduled-time>"}


def test_parameter_overrides_flow_into_the_environment():
    model = load_template(TEMPLATE, parameter_overrides={"ProgramTimezone": "Europe/Paris"})
    assert model.functions["ExpiryScanFunction"].environment["PROGRAM_TIMEZONE"] == "Europe/Paris"
    with pytest.raises(TemplateError, match="NoSuchParameter"):
        load_template(TEMPLATE, parameter_overrides={"NoSuchParameter": "x"})


def test_functions_are_found_by_any_of_their_names():
    model = load_template(TEMPLATE)
    for name in ("ExpiryScanFunction", "expiryscanfunction", "ExpiryScan", "expiry_scan",
                 "loyalty-local-ExpiryScanFunction"):
        assert model.find_function(name).logical_id == "ExpiryScanFunction"
    assert model.find_function("nope") is None


SHORT_TAGS = """
Parameters:
  Env: {Type: String, Default: dev}
Mappings:
  Sizes: {dev: {Batch: 5}}
Conditions:
  IsDev: !Equals [!Ref Env, dev]
  IsProd: !Not [!Condition IsDev]
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !Join ["-", [jobs, !Ref Env]], FifoQueue: true}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Environment:
        Variables:
          SUB_LIST: !Sub ["${Name}@${AWS::Region}", {Name: !GetAtt Queue.QueueName}]
          SUB_ATTR: !Sub "${Queue.Arn}"
          LITERAL: !Sub "${!NotAVariable}"
          SELECTED: !Select [1, !Split [",", "a,b,c"]]
          MAPPED: !FindInMap [Sizes, !Ref Env, Batch]
          CHOSEN: !If [IsProd, prod, !Ref "AWS::NoValue"]
          LONG_FORM: {"Fn::GetAtt": [Queue, Arn]}
          DATE_STAYS_TEXT: 2012-10-17
      Events:
        Jobs:
          Type: SQS
          Properties: {Queue: !GetAtt Queue.Arn, BatchSize: !FindInMap [Sizes, dev, Batch]}
"""


def test_short_tags_and_intrinsics_resolve(tmp_path):
    (tmp_path / "template.yaml").write_text(SHORT_TAGS)
    model = load_template(tmp_path / "template.yaml", region="eu-west-1")

    env = model.functions["Fn"].environment
    assert env["SUB_LIST"] == "jobs-dev@eu-west-1"
    assert env["SUB_ATTR"] == "arn:aws:sqs:eu-west-1:123456789012:jobs-dev"
    assert env["LITERAL"] == "${NotAVariable}"
    assert env["SELECTED"] == "b"
    assert env["MAPPED"] == "5"
    assert "CHOSEN" not in env  # AWS::NoValue removes it
    assert env["LONG_FORM"] == env["SUB_ATTR"]
    assert env["DATE_STAYS_TEXT"] == "2012-10-17"
    (jobs,) = model.functions["Fn"].events
    assert jobs.queue_arn == env["SUB_ATTR"] and jobs.batch_size == 5


def test_two_functions_disagreeing_on_a_variable_is_an_error(tmp_path):
    (tmp_path / "template.yaml").write_text("""
Resources:
  A: {Type: AWS::Serverless::Function, Properties: {CodeUri: a/, Handler: app.handler,
      Environment: {Variables: {MODE: one}}}}
  B: {Type: AWS::Serverless::Function, Properties: {CodeUri: b/, Handler: app.handler,
      Environment: {Variables: {MODE: two}}}}
""")
    with pytest.raises(EnvironmentConflict, match="MODE"):
        function_environment(load_template(tmp_path / "template.yaml"))


def test_start_emulator_creates_the_real_templates_resources(monkeypatch):
    # its own stack name: other tests in this process may run an emulator too, and
    # moto's state is shared by every emulator in a process
    monkeypatch.setenv("ORDER_WEBHOOK_SECRET", "from-the-environment")
    monkeypatch.setenv("TABLE_NAME", "what-it-was")

    with start_emulator(TEMPLATE, stack_name="template-test") as aws:
        assert os.environ["AWS_ENDPOINT_URL"] == aws.url
        assert os.environ["TABLE_NAME"] == "template-test-LoyaltyTable"
        table = aws.client("dynamodb").describe_table(TableName="template-test-LoyaltyTable")["Table"]
        indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
        assert set(indexes) == {"ExpiryIndex", "MemberMessages", "PendingPushes", "TierReviews", "Leaderboard"}
        assert indexes["ExpiryIndex"]["Projection"]["ProjectionType"] == "INCLUDE"
        assert indexes["TierReviews"]["Projection"]["ProjectionType"] == "INCLUDE"
        secret = json.loads(aws.client("secretsmanager").get_secret_value(
            SecretId=os.environ["SECRETS_ID"])["SecretString"])
        assert secret["ORDER_WEBHOOK_SECRET"] == "from-the-environment"
        assert secret["WECHAT_TOKEN"] == "local-wechat-token"
        parameter = aws.client("ssm").get_parameter(Name=os.environ["RULES_PARAMETER"])
        # "{}" in the template; the test session starts it with the order-only rules (LOCAL_RULES)
        assert parameter["Parameter"]["Value"] == os.environ.get("LOCAL_RULES", "{}")
        # creating the resources again is a no-op
        create_resources(aws.model, aws.url)

    assert os.environ["TABLE_NAME"] == "what-it-was"


def test_the_shell_sets_log_verbosity_but_not_the_templates_other_variables(monkeypatch):
    from infra.local.runtime import FunctionRuntime

    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("TABLE_NAME", "stale-export")
    environment = FunctionRuntime(load_template(TEMPLATE), "http://127.0.0.1:1").environment()
    assert environment["POWERTOOLS_LOG_LEVEL"] == "WARNING"
    assert environment["TABLE_NAME"] == "loyalty-local-LoyaltyTable"
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"


def test_drain_counts_dead_letter_queues_after_the_queues_that_feed_them():
    """SQS moves a message to its DLQ inside a ReceiveMessage, which no batch marks as
    activity: counting the DLQ first could miss a message that moves meanwhile (seen in
    neither), and drain would report an empty DLQ too early."""
    from infra.local.pollers import Pollers

    model = load_template(TEMPLATE)
    pollers = Pollers(model, runtime=None, endpoint_url="http://127.0.0.1:9")
    read: list[str] = []

    class Sqs:
        def get_queue_attributes(self, QueueUrl, AttributeNames):
            read.append(QueueUrl)
            return {"Attributes": {name: "0" for name in AttributeNames}}

    pollers._sqs = Sqs()
    summary = pollers.queue_counts()
    dead_letter = {queue.url for queue in model.dead_letter_queues()}
    assert dead_letter and set(summary["dead_letter"]) == {q.logical_id for q in model.dead_letter_queues()}
    first_dead_letter = min(i for i, url in enumerate(read) if url in dead_letter)
    assert all(url in dead_letter for url in read[first_dead_letter:])


def _resources_of_type(kind: str) -> dict[str, dict]:
    from infra.local.template import read_template
    return {k: r for k, r in read_template(TEMPLATE)["Resources"].items() if r["Type"] == kind}


def _scheduled_runs_queues() -> set[str]:
    """Queues that catch scheduled runs: ScheduleV2 dead-letter queues, async failure destinations."""
    queues = set()
    for function in _resources_of_type("AWS::Serverless::Function").values():
        properties = function["Properties"]
        for event in (properties.get("Events") or {}).values():
            if event["Type"] == "ScheduleV2":
                queues.add(event["Properties"]["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0])
        on_failure = (properties.get("EventInvokeConfig") or {}).get("DestinationConfig", {}).get("OnFailure")
        if on_failure:
            queues.add(on_failure["Destination"]["Fn::GetAtt"][0])
    return queues


def test_every_dead_letter_queue_has_an_alarm():
    """O4: an operator hears about a dead-lettered message or a scheduled run that failed."""
    model = load_template(TEMPLATE)
    alarms = {k: r["Properties"] for k, r in _resources_of_type("AWS::CloudWatch::Alarm").items()}
    alarmed = {dim["Value"]["Fn::GetAtt"][0] for props in alarms.values()
               for dim in props.get("Dimensions", []) if dim["Name"] == "QueueName"}
    assert alarmed == {queue.logical_id for queue in model.dead_letter_queues()} | _scheduled_runs_queues()
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": "OperatorAlarms"}]


def test_every_scheduled_function_has_its_failures_caught():
    """Scheduler's own failures (after RetryPolicy) go to the schedule's DLQ; the function's
    (it raised, after Lambda's async retries) to its OnFailure destination."""
    functions = _resources_of_type("AWS::Serverless::Function")
    scheduled = {name: f["Properties"] for name, f in functions.items()
                 if any(e["Type"] == "ScheduleV2" for e in (f["Properties"].get("Events") or {}).values())}
    assert set(scheduled) == {"ExpiryScanFunction", "ReminderScanFunction", "ReleaseDeferredFunction",
                              "ReapplyPushesFunction", "TierReviewFunction", "ChallengeCalendarFunction"}
    queues = {k: r["Properties"] for k, r in _resources_of_type("AWS::SQS::Queue").items()}
    for name, properties in scheduled.items():
        for event in properties["Events"].values():
            assert event["Properties"]["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["ScheduledRunsDLQ", "Arn"]}, name
        on_failure = properties["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["ScheduledRunsDLQ", "Arn"]}}, name
    assert queues["ScheduledRunsDLQ"]["MessageRetentionPeriod"] == 1209600          # 14 days


def test_every_queue_is_encrypted_with_sse_sqs():
    queues = _resources_of_type("AWS::SQS::Queue")
    assert len(queues) == 9
    for name, queue in queues.items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, name


def test_the_send_metrics_come_from_the_senders_emf_not_from_log_text():
    """O4: FailedSendRatioAlarm reads what the senders publish (loyalty/web/senders.py)."""
    from infra.local.template import read_template
    from loyalty.web.senders import COUNTED

    template = read_template(TEMPLATE)
    assert _resources_of_type("AWS::Logs::MetricFilter") == {}
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    namespace = {"Fn::Sub": "${AWS::StackName}/Messaging"}
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == namespace
    alarm = _resources_of_type("AWS::CloudWatch::Alarm")["FailedSendRatioAlarm"]["Properties"]
    read = {m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Metric"]
            for m in alarm["Metrics"] if "MetricStat" in m}
    assert set(read) == set(COUNTED.values()) == {"MessagesSent", "MessagesFailed"}
    for metric in read.values():
        # the series without `channel`: the sum over every channel (senders.send_metrics)
        assert metric["Namespace"] == namespace
        assert metric["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]
    dashboard = _resources_of_type("AWS::CloudWatch::Dashboard")["OperationsDashboard"]["Properties"]
    body = dashboard["DashboardBody"]["Fn::Sub"]
    assert '"MessagesSent", "service", "loyalty"' in body and '"MessagesSent", "channel", "whatsapp"' in body


def test_every_checkov_skip_says_why():
    from infra.local.template import read_template

    for name, resource in read_template(TEMPLATE)["Resources"].items():
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
            assert skip["id"].startswith("CKV_") and len(skip.get("comment", "")) > 20, (name, skip)


def test_samconfig_profiles_name_real_parameters():
    import tomllib

    from infra.local.template import read_template

    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    parameters = set(read_template(TEMPLATE)["Parameters"])
    for env in ("default", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert config[env]["global"]["parameters"]["region"] == "us-east-1"
        assert deploy["capabilities"] == "CAPABILITY_IAM" and deploy["resolve_s3"] is True
        overrides = dict(pair.split("=", 1) for pair in deploy["parameter_overrides"].split())
        assert {"ProgramTimezone", "AlarmEmail"} <= set(overrides) <= parameters
    assert "AuthDomainPrefix" in config["prod"]["deploy"]["parameters"]["parameter_overrides"]
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert config["default"]["global"]["parameters"]["stack_name"] != config["prod"]["global"]["parameters"]["stack_name"]


def test_a_poller_runs_what_it_received_when_filling_the_batch_fails():
    """A receive whose messages are dropped would count a delivery for nothing: they
    would come back later one receive closer to the dead-letter queue."""
    from botocore.exceptions import EndpointConnectionError

    from infra.local.pollers import Activity, SqsPoller

    model = load_template(TEMPLATE)
    function = model.functions["SendSmsFunction"]
    [event] = function.events_of(SqsEvent)
    poller = SqsPoller(function.logical_id, event, model.queue_by_arn(event.queue_arn), runtime=None,
                       endpoint_url="http://127.0.0.1:9", region=model.region, activity=Activity())
    answers = [{"Messages": [{"MessageId": "a"}, {"MessageId": "b"}]}, EndpointConnectionError(endpoint_url="x")]

    class Sqs:
        def receive_message(self, **kwargs):
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    poller._sqs = Sqs()
    assert [m["MessageId"] for m in poller._receive_batch()] == ["a", "b"]


AUTH_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Pool: {Type: AWS::Cognito::UserPool}
  Client: {Type: AWS::Cognito::UserPoolClient, Properties: {UserPoolId: !Ref Pool, AllowedOAuthScopes: [a/read]}}
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            AuthorizationScopes: [a/default]
            JwtConfiguration: {issuer: !Sub "https://cognito-idp.${AWS::Region}.amazonaws.com/${Pool}", audience: [!Ref Client]}
            IdentitySource: $request.header.X-Token
          Lambda:
            FunctionArn: arn:aws:lambda:us-east-1:123456789012:function:auth
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Events:
        Open: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /open, Method: GET, Auth: {Authorizer: NONE}}}
        Default: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /default, Method: GET}}
        Scoped: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /scoped, Method: GET, Auth: {AuthorizationScopes: [a/read]}}}
"""


def test_route_authorizers_follow_sams_rules(tmp_path):
    (tmp_path / "template.yaml").write_text(AUTH_TEMPLATE)
    model = load_template(tmp_path / "template.yaml")
    events = {e.path: e for _, e in model.api_events()}
    assert events["/open"].authorizer is None
    assert events["/default"].scopes == ("a/default",)  # the authorizer's own scopes
    assert events["/scoped"].scopes == ("a/read",)      # the route's win
    assert events["/scoped"].authorizer.header == "X-Token"
    assert events["/scoped"].authorizer.audience == (model.token_clients["Client"].client_id,)


@pytest.mark.parametrize("route_auth", ["{Authorizer: Lambda}", "{Authorizer: AWS_IAM}"])
def test_an_authorizer_the_local_stack_cannot_check_fails_loudly(tmp_path, route_auth):
    text = AUTH_TEMPLATE.replace("Path: /open, Method: GET, Auth: {Authorizer: NONE}",
                                 f"Path: /open, Method: GET, Auth: {route_auth}")
    (tmp_path / "template.yaml").write_text(text)
    with pytest.raises(TemplateError, match="authorizer"):
        load_template(tmp_path / "template.yaml")


def test_the_model_knows_where_scheduled_runs_fail_to():
    model = load_template(TEMPLATE)
    dlq = model.queues["ScheduledRunsDLQ"]
    assert dlq in model.dead_letter_queues()
    for name in ("ExpiryScanFunction", "ReminderScanFunction", "ReleaseDeferredFunction", "ReapplyPushesFunction",
                 "TierReviewFunction", "ChallengeCalendarFunction"):
        function = model.functions[name]
        assert function.on_failure_arn == dlq.arn and function.async_retries == 2
        assert [event.dead_letter_arn for event in function.events] == [dlq.arn]
    assert model.functions["OrderWebhookFunction"].on_failure_arn is None


def _without_push_sweep(model):
    """The model without ReapplyPushesFunction, whose 5-minute schedule would add its own
    catch-up runs to the calls these tests count."""
    import copy
    trimmed = copy.copy(model)
    trimmed.functions = {k: v for k, v in model.functions.items() if k != "ReapplyPushesFunction"}
    return trimmed


class _RaisingRuntime:
    """A FunctionRuntime whose function raises the first `failures` times."""

    def __init__(self, endpoint_url: str, failures: int):
        self.endpoint_url = endpoint_url
        self.failures = failures
        self.calls: list[tuple[str, dict]] = []

    def invoke(self, logical_id, event):
        self.calls.append((logical_id, event))
        if len(self.calls) <= self.failures:
            raise RuntimeError("the table is not there")
        return {"ok": True}


def _scheduled_runs_dlq(fresh_aws) -> list[dict]:
    url = fresh_aws.model.queues["ScheduledRunsDLQ"].url
    messages = fresh_aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_a_scheduled_run_that_keeps_raising_is_retried_then_lands_in_its_on_failure_queue(fresh_aws):
    """As in AWS: Scheduler invokes asynchronously, Lambda retries twice, then sends its
    invocation record to EventInvokeConfig's OnFailure queue."""
    from infra.local.schedules import ScheduleRunner, SimulatedClock

    runtime = _RaisingRuntime(fresh_aws.url, failures=99)
    # the clock a minute before: no other schedule catches up in between
    clock = SimulatedClock(start=datetime(2027, 2, 28, 16, 4, tzinfo=timezone.utc))
    runner = ScheduleRunner(_without_push_sweep(fresh_aws.model), runtime, drain=dict, clock=clock)
    with pytest.raises(RuntimeError, match="the table is not there"):
        runner.run("ExpiryScanFunction", "2027-03-01T00:05:00+08:00")
    assert runtime.calls == [("ExpiryScanFunction", {"time": "2027-02-28T16:05:00Z"})] * 3
    [record] = _scheduled_runs_dlq(fresh_aws)
    assert record["requestPayload"] == {"time": "2027-02-28T16:05:00Z"}
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"] == fresh_aws.model.functions["ExpiryScanFunction"].arn + ":$LATEST"
    assert record["responsePayload"] == {"errorMessage": "the table is not there", "errorType": "RuntimeError"}


def test_a_scheduled_run_that_succeeds_on_a_retry_leaves_nothing_behind(fresh_aws):
    from infra.local.schedules import ScheduleRunner, SimulatedClock

    runtime = _RaisingRuntime(fresh_aws.url, failures=2)
    clock = SimulatedClock(start=datetime(2027, 3, 1, 11, 59, tzinfo=timezone.utc))
    runner = ScheduleRunner(_without_push_sweep(fresh_aws.model), runtime, drain=dict, clock=clock)
    assert runner.run("ReleaseDeferredFunction", "2027-03-01T12:00:00Z")["result"] == {"ok": True}
    assert len(runtime.calls) == 3 and _scheduled_runs_dlq(fresh_aws) == []


def test_a_missed_run_that_raises_lands_in_its_on_failure_queue_and_the_requested_run_still_runs(fresh_aws):
    from infra.local.schedules import ScheduleRunner, SimulatedClock

    # given the clock at 23:59 (Shanghai) and the 00:05 expiry requested: the 15-minute
    # release at 00:00 fires first, and raises on its 3 attempts
    runtime = _RaisingRuntime(fresh_aws.url, failures=3)
    clock = SimulatedClock(start=datetime(2027, 2, 28, 15, 59, tzinfo=timezone.utc))
    runner = ScheduleRunner(_without_push_sweep(fresh_aws.model), runtime, drain=dict, clock=clock)

    answer = runner.run("ExpiryScanFunction", "2027-03-01T00:05:00+08:00")

    assert answer["result"] == {"ok": True}
    assert [call[0] for call in runtime.calls] == ["ReleaseDeferredFunction"] * 3 + ["ExpiryScanFunction"]
    [release] = answer["caught_up"]["schedules"]
    assert release["failed"] == 1 and release["runs"] == [
        {"time": "2027-02-28T16:00:00Z", "error": "RuntimeError: the table is not there"}]
    [record] = _scheduled_runs_dlq(fresh_aws)
    assert record["requestPayload"] == {"time": "2027-02-28T16:00:00Z"}
