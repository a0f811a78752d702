"""Structured output: an answer that is JSON, valid for a JSON schema, made so while decoding.

A local model is constrained by onnxruntime-genai's guidance (llguidance): the schema becomes a
grammar, so every token keeps the text a prefix of some valid document and the end-of-sequence
token is allowed only once the document is complete. The grammar also fixes the layout: compact
JSON (no whitespace between tokens, `,` and `:` with no spaces), so a model cannot spend its
budget on blanks. Cloud providers get the same schema through their own mechanism (router).

Whatever made the text, `check_answer` parses it and validates it against the schema with the
`jsonschema` package (imported only here, only when checking): a truncated or invalid answer is
a `StructuredOutputError`, never a success.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from agentic_onnx.core.errors import AgenticError, ExitCode, UsageError

GuidanceKind = Literal["json_schema", "regex", "lark_grammar"]

# llguidance's `x-guidance` layout options (top level of a JSON schema, or of a `%json` block in
# a lark grammar). Separators are literal strings in the llguidance that onnxruntime-genai 0.18
# bundles, so the layout is exactly compact JSON.
COMPACT_LAYOUT: dict[str, Any] = {"whitespace_flexible": False}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
SCHEMA_NAME_PATTERN = re.compile(r"[^A-Za-z0-9_-]+")


class SchemaError(UsageError):
    """A schema (or tools file) that is not valid JSON Schema, or that constrained decoding
    cannot enforce."""


class StructuredOutputError(AgenticError):
    """The answer is not what was asked for: cut off by the token budget, not JSON, or not
    valid for the schema. Exit code 1 (a runtime error), never a success; `serve` answers 422
    with the answer beside the error (a 5xx would make SDKs retry the same answer)."""

    exit_code = ExitCode.RUNTIME_ERROR
    http_status = 422


@dataclass(frozen=True)
class Guidance:
    """One constraint for `GeneratorParams.set_guidance(kind, data)`."""

    kind: GuidanceKind
    data: str


@dataclass(frozen=True)
class ResponseFormat:
    """What the answer must be: JSON valid for `schema`. `json_mode` is "any JSON object"
    (`--json-mode`, OpenAI's `json_object`); `name` labels the schema for cloud APIs."""

    schema: dict[str, Any]
    name: str = "response"
    json_mode: bool = False

    def guidance(self) -> Guidance:
        return Guidance("json_schema", json.dumps(with_layout(self.schema)))

    def cloud_schema(self) -> dict[str, Any]:
        """The schema without our llguidance-only keys, for providers that check schemas."""
        return {key: value for key, value in self.schema.items() if key != "x-guidance"}


def json_mode() -> ResponseFormat:
    return ResponseFormat(dict(ANY_OBJECT), name="json_object", json_mode=True)


def response_format(schema: dict[str, Any]) -> ResponseFormat:
    """A checked schema as a ResponseFormat (named after its `title`, if any)."""
    check_schema(schema, "--schema")
    title = schema.get("title")
    name = SCHEMA_NAME_PATTERN.sub("_", title)[:64] if isinstance(title, str) and title else ""
    return ResponseFormat(schema, name=name or "response")


def load_schema(value: str) -> ResponseFormat:
    """`--schema FILE|JSON`: inline JSON when it starts with `{`, else a file path."""
    text = value.strip()
    if not text.startswith("{"):
        text = read_json_file(value, "--schema")
    return response_format(parse_json_text(text, "--schema"))


def read_json_file(path: str, what: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as error:
        raise SchemaError(f"{what}: cannot read {path!r} ({error.strerror or error}).",
                          "Pass a JSON file that exists, or inline JSON.") from None


def parse_json_text(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise SchemaError(f"{what} is not valid JSON ({error}).",
                          "Check the file or the inline JSON.") from None


def check_schema(schema: Any, what: str) -> None:
    """`schema` must be a JSON object that is a valid JSON Schema (for its `$schema` draft)."""
    if not isinstance(schema, dict):
        raise SchemaError(f"{what} must be a JSON object (a JSON Schema).",
                          'For example {"type": "object", "properties": {...}}.')
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError as JsonSchemaError

    try:
        validators.validator_for(schema, default=validators.Draft202012Validator).check_schema(
            schema)
    except JsonSchemaError as error:
        raise SchemaError(f"{what} is not a valid JSON Schema: {error.message}"
                          f"{_where(error.absolute_path)}.",
                          "Fix the schema (https://json-schema.org).") from None


def with_layout(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with the compact layout for llguidance; a schema's own `x-guidance` keys win."""
    own = schema.get("x-guidance") if isinstance(schema.get("x-guidance"), dict) else {}
    return {**schema, "x-guidance": {**COMPACT_LAYOUT, **own}}


def parse_json(text: str, what: str = "The answer") -> Any:
    """Parse generated JSON; numbers with a fraction or exponent stay exact (`Decimal`), so a
    value beyond a double's range still validates and never becomes `Infinity`."""
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError as error:
        raise StructuredOutputError(f"{what} is not valid JSON ({error}).",
                                    "Run again, or use a larger model.") from None


def validate(value: Any, schema: dict[str, Any], what: str = "The answer") -> None:
    """Raise StructuredOutputError naming the first (most relevant) violation."""
    from jsonschema import validators
    from jsonschema.exceptions import best_match

    validator_class = validators.validator_for(schema, default=validators.Draft202012Validator)
    error = best_match(validator_class(schema).iter_errors(value))
    if error is not None:
        raise StructuredOutputError(
            f"{what} does not match the schema: {error.message}{_where(error.absolute_path)}.",
            "Run again, or use a larger model.")


def check_answer(text: str, finish_reason: str | None, fmt: ResponseFormat) -> Any:
    """The parsed answer, or a StructuredOutputError that says why there is none."""
    if finish_reason == "length":
        raise StructuredOutputError(
            "The token budget ran out before the JSON answer was complete "
            "(finish_reason: length).", "Raise --max-tokens.")
    value = parse_json(text.strip())
    validate(value, fmt.schema)
    return value


def unsupported_schema(error: Exception) -> SchemaError:
    """onnxruntime-genai's grammar compiler refused a schema or grammar: say which keywords."""
    detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else "no details"
    return SchemaError(f"Constrained decoding cannot enforce this schema ({detail}).",
                       "Remove the unsupported keywords (docs/tools.md lists what works).")


def _where(path: Any) -> str:
    parts = list(path)
    return f" at {'/'.join(str(part) for part in parts)}" if parts else ""
