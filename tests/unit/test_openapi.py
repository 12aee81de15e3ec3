"""openapi.yaml is a valid OpenAPI 3.0 document that describes exactly the routes of
template.yaml, and agrees with the request models."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import OpenAPIV30SpecValidator

from infra.local.template import read_template
from loyalty.web import models
from loyalty.web.signatures import verify_order_signature

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text("utf-8"))


@pytest.fixture(scope="module")
def template_routes() -> set[tuple[str, str]]:
    template = read_template(ROOT / "template.yaml")
    routes = set()
    for resource in template["Resources"].values():
        for event in (resource.get("Properties") or {}).get("Events", {}).values():
            if event.get("Type") in ("Api", "HttpApi"):
                routes.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
    return routes


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _deref(node, spec: dict):
    """The node with every local $ref replaced by its target (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _deref(target, spec)
        return {key: _deref(value, spec) for key, value in node.items()}
    if isinstance(node, list):
        return [_deref(value, spec) for value in node]
    return node


# --- the document ----------------------------------------------------------------------

def test_the_document_is_valid_openapi_3_0_3(spec):
    assert spec["openapi"] == "3.0.3"
    OpenAPIV30SpecValidator(copy.deepcopy(spec)).validate()


def test_every_template_route_is_described(spec, template_routes):
    described = {(method, path) for method, path, _ in _operations(spec)}
    assert template_routes, "no Api events found in template.yaml"
    assert template_routes - described == set()


def test_every_operation_is_a_template_route(spec, template_routes):
    described = {(method, path) for method, path, _ in _operations(spec)}
    assert described - template_routes == set()


def test_every_operation_has_an_id_a_tag_and_a_success_answer(spec):
    ids = []
    for method, path, op in _operations(spec):
        ids.append(op["operationId"])
        assert op.get("tags"), f"{method} {path} has no tag"
        assert any(code.startswith("2") for code in op["responses"]), f"{method} {path} has no 2xx answer"
    assert len(ids) == len(set(ids))


def test_every_implemented_operation_documents_its_errors(spec):
    for method, path, op in _operations(spec):
        codes = set(op["responses"])
        assert {"429", "503"} <= codes, f"{method} {path}"
        if "{member_id}" in path:
            assert "400" in codes, f"{method} {path}: an invalid member_id is a 400"
        if "requestBody" in op:
            assert "400" in codes, f"{method} {path}: a bad body is a 400"
        for code in codes - {"200", "201", "202"}:
            response = _deref(op["responses"][code], spec)
            if "application/json" not in response.get("content", {}):
                assert path.startswith("/webhooks/"), f"{method} {path} {code}: not JSON"
                continue  # provider webhooks answer some errors in the provider's own terms
            schema = response["content"]["application/json"]["schema"]
            assert "message" in schema["required"], f"{method} {path} {code}"
            # 400s list their problems; so does the one 409 that names a field (a contact
            # held by another member), in the same shape.
            lists = code == "400" or (method, path, code) == ("PUT", "/members/{member_id}", "409")
            assert ("errors" in schema["required"]) == lists, f"{method} {path} {code}"


def test_every_operation_states_the_scopes_the_template_gives_its_route(spec):
    from infra.local.template import load_template
    model = load_template(ROOT / "template.yaml")
    routes = {(event.method, event.path): event for _, event in model.api_events()}
    for method, path, op in _operations(spec):
        event = routes[(method, path)]
        if path.startswith("/webhooks/"):
            assert event.authorizer is None, f"{method} {path}: a signed webhook takes no bearer token"
            assert all("cognito" not in requirement for requirement in op.get("security", [])), f"{method} {path}"
            continue
        assert event.authorizer is not None and event.scopes, f"{method} {path}: no authorizer or scopes"
        # OpenAPI lists alternatives; API Gateway admits a token with any one of the route's scopes.
        assert op["security"] == [{"cognito": [scope]} for scope in event.scopes], f"{method} {path}"
        assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"
        documented = set(spec["components"]["securitySchemes"]["cognito"]["flows"]["clientCredentials"]["scopes"]) | \
            set(spec["components"]["securitySchemes"]["cognito"]["flows"]["authorizationCode"]["scopes"])
        assert set(event.scopes) <= documented and set(event.scopes) <= set(model.scopes), f"{method} {path}"


def test_the_order_webhook_documents_its_contract(spec):
    op = spec["paths"]["/webhooks/orders"]["post"]
    assert op["security"] == [{"orderSignature": []}]
    assert {"200", "400", "401", "409", "413", "503"} <= set(op["responses"])
    retry_after = _deref(op["responses"]["503"], spec)["headers"]
    assert "Retry-After" in retry_after
    scheme = spec["components"]["securitySchemes"]["orderSignature"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Signature")


# --- examples and schemas --------------------------------------------------------------

def _examples(spec: dict):
    """(where, schema, example) for every example of a JSON, form or text body and parameter."""
    def media(where, content):
        for media_type, body in (content or {}).items():
            if "xml" in media_type or "schema" not in body:
                continue
            if "example" in body:
                yield where + f" {media_type}", body["schema"], body["example"]
            for name, example in (body.get("examples") or {}).items():
                yield where + f" {media_type} {name}", body["schema"], _deref(example, spec)["value"]

    for method, path, op in _operations(spec):
        where = f"{method} {path}"
        if "requestBody" in op:
            yield from media(where + " request", _deref(op["requestBody"], spec).get("content"))
        for code, response in op["responses"].items():
            yield from media(f"{where} {code}", _deref(response, spec).get("content"))
    for name, parameter in spec["components"]["parameters"].items():
        if "example" in parameter:
            yield f"parameter {name}", parameter["schema"], parameter["example"]


def test_every_example_matches_its_schema(spec):
    checked = 0
    for where, schema, example in _examples(spec):
        validator = OAS30Validator(_deref(schema, spec), format_checker=oas30_format_checker)
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(example)]
        assert not problems, f"{where}: {problems}"
        checked += 1
    assert checked > 40


def test_the_signature_example_verifies(spec):
    example = spec["components"]["securitySchemes"]["orderSignature"]["x-signature-example"]
    verify_order_signature(example["header"], example["body"].encode(), [example["secret"]],
                           now=example["timestamp"] + 299, tolerance_s=300)


# --- request bodies agree with the models that parse them ------------------------------

MODELS = {
    "OrderEvent": models.OrderEventBody, "Order": models.OrderBody, "ProfileInput": models.ProfileBody,
    "ConsentInput": models.ConsentBody, "RedemptionInput": models.RedemptionBody,
    "CancelInput": models.CancelBody, "AdjustmentInput": models.AdjustmentBody,
    "ActivityInput": models.ActivityBody, "ReviewDecisionInput": models.ReviewDecisionBody,
    "InvitationsInput": models.InvitationsBody, "EnrolmentInput": models.EnrolmentBody,
}
CONSTRAINTS = ("type", "pattern", "minLength", "maxLength", "minimum", "maximum", "maxItems", "enum")


def _constraints(schema: dict) -> dict:
    """The constraints a field schema states, in OpenAPI 3.0 terms (nullable, no anyOf)."""
    nullable = False
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        nullable = len(branches) < len(schema["anyOf"])
        (schema,) = branches
    schema = dict(schema)
    if schema.get("type") == "integer" and "exclusiveMinimum" in schema:
        schema["minimum"] = schema.pop("exclusiveMinimum") + 1
    found = {key: schema[key] for key in CONSTRAINTS if key in schema}
    if "items" in schema:
        found["items"] = _constraints(schema["items"])
    found["nullable"] = nullable or schema.get("nullable", False)
    return found


@pytest.mark.parametrize("name", sorted(MODELS))
def test_request_schema_matches_its_model(spec, name):
    model = MODELS[name]
    documented = spec["components"]["schemas"][name]
    generated = model.model_json_schema(ref_template="#/$defs/{model}")
    assert set(documented["properties"]) == set(model.model_fields), name
    assert set(documented.get("required", [])) == {f for f, info in model.model_fields.items() if info.is_required()}
    assert documented["additionalProperties"] is (model.model_config.get("extra") != "forbid")
    for field, schema in generated["properties"].items():
        if "$ref" in schema:
            assert documented["properties"][field] == {"$ref": f"#/components/schemas/{schema['$ref'].split('/')[-1].removesuffix('Body')}"}
            continue
        stated = _constraints(documented["properties"][field])
        for key, value in _constraints(schema).items():
            assert stated.get(key, False if key == "nullable" else None) == value, f"{name}.{field}.{key}"


def test_path_parameters_match_the_edge_checks(spec):
    parameters = spec["components"]["parameters"]
    assert parameters["MemberId"]["schema"]["pattern"] == models.MEMBER_ID
    assert tuple(parameters["Channel"]["schema"]["enum"]) == models.CHANNELS
