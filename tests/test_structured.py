"""Structured output on the random-weight fixtures: only the grammar can make the JSON valid,
so every answer that finishes must parse, validate, and be compact."""

from __future__ import annotations

import json
from decimal import Decimal

import jsonschema
import pytest

from agentic_onnx.core.generation.engine import load_model
from agentic_onnx.core.errors import ExitCode
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.core.generation.response import Response
from agentic_onnx.core.answers.structured import (
    SchemaError,
    StructuredOutputError,
    check_answer,
    json_mode,
    load_schema,
    response_format,
)

from .conftest import MODELS, run_cli

FIXTURES = ["tiny-qwen2-fp32", "tiny-phi3-fp32"]
PROMPTS = ["Describe a user.", "Return the data as JSON, please.", "x"]

# Bounded schemas: every string, number and list has a limit, so an answer always fits the
# budget and must finish with `stop`.
SCHEMAS = {
    "flat-required": {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12},
                       "age": {"type": "integer", "minimum": 0, "maximum": 130},
                       "admin": {"type": "boolean"}},
        "required": ["name", "age", "admin"], "additionalProperties": False},
    "nested-enum": {
        "type": "object",
        "properties": {
            "user": {"type": "object",
                     "properties": {"role": {"enum": ["admin", "user", "guest"]},
                                    "id": {"type": "integer", "minimum": 1, "maximum": 9999}},
                     "required": ["role", "id"], "additionalProperties": False},
            "status": {"enum": ["active", "disabled", None]},
        },
        "required": ["user", "status"], "additionalProperties": False},
    "arrays-optional": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 6},
                     "minItems": 1, "maxItems": 3},
            "scores": {"type": "array", "maxItems": 4,
                       "items": {"type": "number", "minimum": 0, "maximum": 10}},
            "note": {"type": "string", "maxLength": 8},
        },
        "required": ["tags"], "additionalProperties": False},
    "array-of-objects": {
        "type": "object",
        "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
            "type": "object",
            "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                           "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
            "required": ["sku", "qty"], "additionalProperties": False}}},
        "required": ["items"], "additionalProperties": False},
    "defs-and-ref": {
        "$defs": {"point": {"type": "object", "properties": {
            "x": {"type": "integer", "minimum": -9, "maximum": 9},
            "y": {"type": "integer", "minimum": -9, "maximum": 9}},
            "required": ["x", "y"], "additionalProperties": False}},
        "type": "object",
        "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
        "required": ["start", "end"], "additionalProperties": False},
}


def loaded(name: str):
    return load_model(open_model_folder(MODELS / name), "cpu", threads=1)


def generate(model: str, schema_format, prompt: str, *, max_tokens: int = 300,
             temperature: float = 0.0, seed: int | None = None) -> Response:
    options = build_options(max_tokens=max_tokens, temperature=temperature, seed=seed)
    events = loaded(model).stream([{"role": "user", "content": prompt}], options,
                                  guidance=schema_format.guidance())
    return Response(events, "onnx", model).consume()


def whitespace_outside_strings(text: str) -> bool:
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char.isspace():
            return True
    return False


@pytest.mark.parametrize("model", FIXTURES)
@pytest.mark.parametrize("schema_name", list(SCHEMAS))
def test_constrained_answers_always_parse_validate_and_are_compact(model, schema_name):
    schema = SCHEMAS[schema_name]
    fmt = response_format(schema)
    runs = [(prompt, 0.0, None) for prompt in PROMPTS] + \
           [(PROMPTS[0], 1.0, seed) for seed in range(6)]
    for prompt, temperature, seed in runs:
        response = generate(model, fmt, prompt, temperature=temperature, seed=seed)
        assert response.finish_reason == "stop", (prompt, seed, response.text)
        value = json.loads(response.text)  # plain JSON, independent of our own parser
        jsonschema.validate(value, schema)
        assert not whitespace_outside_strings(response.text), response.text
        assert check_answer(response.text, response.finish_reason, fmt) is not None


@pytest.mark.parametrize("model", FIXTURES)
def test_unbounded_schema_either_validates_or_reports_length(model):
    """Free strings and json-mode: a random model may run out of budget, never into bad JSON."""
    schema = {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}
    finished = 0
    for fmt in (response_format(schema), json_mode()):
        for seed in range(5):
            response = generate(model, fmt, "data", max_tokens=120, temperature=1.0, seed=seed)
            if response.finish_reason == "stop":
                finished += 1
                jsonschema.validate(json.loads(response.text), fmt.schema)
            else:
                assert response.finish_reason == "length"
                with pytest.raises(StructuredOutputError, match="finish_reason: length"):
                    check_answer(response.text, response.finish_reason, fmt)
    assert finished > 0


def test_a_budget_too_small_is_finish_length_and_an_error():
    fmt = response_format(SCHEMAS["flat-required"])
    response = generate("tiny-phi3-fp32", fmt, "x", max_tokens=4)
    assert response.finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    with pytest.raises(StructuredOutputError) as caught:
        check_answer(response.text, response.finish_reason, fmt)
    assert caught.value.exit_code == ExitCode.RUNTIME_ERROR


def test_check_answer_names_the_violation_and_keeps_numbers_exact():
    fmt = response_format(SCHEMAS["nested-enum"])
    with pytest.raises(StructuredOutputError, match="user/role"):
        check_answer('{"user":{"role":"root","id":1},"status":null}', "stop", fmt)
    with pytest.raises(StructuredOutputError, match="not valid JSON"):
        check_answer('{"user":', "stop", fmt)
    huge = response_format({"type": "object", "properties": {"x": {"type": "number"}}})
    assert check_answer('{"x":1E999}', "stop", huge) == {"x": Decimal("1E999")}


def test_schema_keywords_the_grammar_cannot_enforce_are_a_usage_error():
    fmt = response_format({"type": "array", "items": {"type": "integer"}, "uniqueItems": True})
    with pytest.raises(SchemaError, match="uniqueItems") as caught:
        generate("tiny-phi3-fp32", fmt, "x")
    assert caught.value.exit_code == ExitCode.USAGE_ERROR


def test_load_schema_reads_inline_json_and_files(tmp_path):
    inline = load_schema('{"type": "object", "title": "My Answer!"}')
    assert inline.schema == {"type": "object", "title": "My Answer!"}
    assert inline.name == "My_Answer_"
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMAS["flat-required"]), encoding="utf-8")
    assert load_schema(str(path)).schema == SCHEMAS["flat-required"]


@pytest.mark.parametrize(("value", "needle"), [
    ("{not json", "not valid JSON"),
    ('{"type": "objectx"}', "not a valid JSON Schema"),
    ("/does/not/exist.json", "cannot read"),
])
def test_bad_schemas_are_usage_errors(value, needle):
    with pytest.raises(SchemaError, match=needle) as caught:
        load_schema(value)
    assert caught.value.exit_code == ExitCode.USAGE_ERROR


def test_the_layout_is_compact_and_a_schemas_own_x_guidance_wins():
    fmt = response_format({"type": "object", "x-guidance": {"whitespace_flexible": True}})
    sent = json.loads(fmt.guidance().data)
    assert sent["x-guidance"] == {"whitespace_flexible": True}
    assert json.loads(json_mode().guidance().data)["x-guidance"] == {"whitespace_flexible": False}
    assert "x-guidance" not in fmt.cloud_schema()


# -- through `run` ------------------------------------------------------------------------------

PHI3 = str(MODELS / "tiny-phi3-fp32")
QWEN2 = str(MODELS / "tiny-qwen2-fp32")


@pytest.mark.parametrize("model", [PHI3, QWEN2])
def test_run_schema_prints_only_valid_json(model, tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMAS["nested-enum"]), encoding="utf-8")
    result = run_cli("run", "-m", model, "-t", "A user, as JSON.", "--schema", str(path),
                     "--temperature", "1", "--seed", "5")
    assert result.returncode == 0, result.stderr
    jsonschema.validate(json.loads(result.stdout), SCHEMAS["nested-enum"])
    assert result.stdout.endswith("}\n")


def test_run_json_mode_with_json_output_reports_the_answer():
    result = run_cli("run", "-m", PHI3, "-t", "x", "--schema",
                     json.dumps(SCHEMAS["flat-required"]), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["finish_reason"] == "stop" and "error" not in data
    jsonschema.validate(json.loads(data["text"]), SCHEMAS["flat-required"])


@pytest.mark.parametrize("mode", [["--json-mode"], ["--schema", json.dumps(SCHEMAS["flat-required"])]])
def test_run_budget_too_small_exits_1_with_finish_length_and_no_json_on_stdout(mode):
    result = run_cli("run", "-m", PHI3, "-t", "x", *mode, "--max-tokens", "3")
    assert result.returncode == ExitCode.RUNTIME_ERROR, result.stderr
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "finish_reason: length" in lines[0] and "--max-tokens" in lines[0]


def test_run_budget_too_small_with_json_reports_length_and_the_error():
    result = run_cli("run", "-m", PHI3, "-t", "x", "--json-mode", "--max-tokens", "3", "--json")
    assert result.returncode == ExitCode.RUNTIME_ERROR
    data = json.loads(result.stdout)  # one object: the answer's fields and the error
    assert data["finish_reason"] == "length"
    assert "finish_reason: length" in data["error"]["message"]
    assert data["error"]["exit_code"] == ExitCode.RUNTIME_ERROR


@pytest.mark.parametrize(("args", "needle"), [
    (["--schema", "{}", "--json-mode"], "exclude each other"),
    (["--schema", '{"type": 5}'], "not a valid JSON Schema"),
    (["--schema", '{"type": "array", "uniqueItems": true}'], "uniqueItems"),
    (["--tool-choice", "auto"], "--tool-choice needs --tools"),
])
def test_run_schema_usage_errors_exit_2(args, needle):
    result = run_cli("run", "-m", PHI3, "-t", "x", *args)
    assert result.returncode == ExitCode.USAGE_ERROR, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
