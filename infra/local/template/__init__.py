"""Read template.yaml into the small model the local stack runs.

The template is the single source of truth: the local stack creates its tables and
queues, routes its API events, checks their authorizers, feeds its queues and enforces
each function's IAM policies from what this package reads.

    model = load_template("template.yaml")
    model.functions["OrderWebhookFunction"].environment["TABLE_NAME"]

Modules: source (the YAML, through cfn-lint's decoder), resolver (intrinsic functions),
model (the dataclasses), sam (SAM's Globals, functions and events; loading), policies
(each function's execution role, as SAM builds it).
"""

from .model import (ApiEvent, FunctionSpec, JwtAuthorizer, ParameterSpec, QueueSpec, ScheduleEvent, SecretSpec, SqsEvent,
                    TableSpec, TemplateError, TemplateModel, TokenClient)
from .resolver import Resolver, api_id
from .sam import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, DEFAULT_STACK_NAME, load_template, merge_globals
from .source import read_template

__all__ = ["ApiEvent", "FunctionSpec", "JwtAuthorizer", "TokenClient", "ParameterSpec", "QueueSpec", "ScheduleEvent", "SecretSpec", "SqsEvent",
           "TableSpec", "TemplateError", "TemplateModel", "Resolver", "api_id", "DEFAULT_ACCOUNT_ID", "DEFAULT_REGION",
           "DEFAULT_STACK_NAME", "load_template", "merge_globals", "read_template"]
