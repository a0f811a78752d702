"""One request path (issue 12): a `ChatRequest` built once per front end, one local entry, the
answer checked wherever a request completes, errors with their HTTP status, and one set of
local settings (EP, threads) for every command that loads a model."""

from __future__ import annotations

import io
import json
import sys

import pytest

from agentic_onnx.core.answers.structured import StructuredOutputError, response_format
from agentic_onnx.core.answers.tool_spec import Tool, ToolChoice
from agentic_onnx.core.errors import (
    AgenticError,
    GenerationError,
    ModelNotFoundError,
    PromptTooLongError,
    UsageError,
)
from agentic_onnx.core.generation.events import Finish, FirstToken, TextDelta, Usage
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response
from agentic_onnx.core.models.model_folder import open_model_folder

from .conftest import MODELS
from .server_support import Server, http

MODEL = "tiny-phi3-fp32"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
HELLO = [{"role": "user", "content": "Say hello."}]


def finished(*events) -> Response:
    return Response(iter(events), "onnx", MODEL).consume()


# -- the request ---------------------------------------------------------------------------


def test_a_request_checks_its_own_answer():
    request = ChatRequest.of(HELLO, response_format=response_format(CITY))
    good = finished(TextDelta('{"city": "Oslo"}'), Usage(3, 5), Finish("stop"))
    cut = finished(TextDelta('{"city": "Os'), Usage(3, 5), Finish("length"))
    wrong = finished(TextDelta('{"town": "Oslo"}'), Usage(3, 5), Finish("stop"))
    assert request.answer_error(good) is None
    assert "token budget ran out" in request.answer_error(cut).message
    with pytest.raises(StructuredOutputError, match="city"):
        request.check(wrong)
    plain = ChatRequest.of(HELLO)
    assert plain.answer_error(cut) is None  # free text: nothing to check


def test_tools_decide_whether_a_request_needs_a_tool_calling_provider():
    tool = Tool("f", "", {"type": "object"})
    assert ChatRequest.of(HELLO, tools=[tool]).requires_tools
    assert not ChatRequest.of(HELLO, tools=[tool], tool_choice=ToolChoice("none")).requires_tools
    assert not ChatRequest.of(HELLO).requires_tools
    request = ChatRequest.of([{"role": "system", "content": "s"}, *HELLO], tools=[tool])
    moved = request.for_candidate("m", request.options)
    assert (moved.model, moved.tools, moved.messages) == ("m", request.tools, request.messages)
    assert request.task_text == "Say hello."
    assert request.openai_tools()[0]["function"]["name"] == "f"


def test_every_error_says_what_a_server_answers():
    """One table: each error class carries its HTTP status beside its exit code."""
    from agentic_onnx.router.errors import ConfigError, PrivacyError, ProviderError
    from agentic_onnx.server.worker import ModelNotServedError, QueueFullError

    statuses = {UsageError("x"): 400, PromptTooLongError(9, 4): 400,
                ModelNotFoundError("x"): 404, ModelNotServedError("m", ["a"]): 404,
                StructuredOutputError("x"): 422, PrivacyError("x"): 403,
                ProviderError("p", "x"): 502, QueueFullError(3): 503, GenerationError("x"): 500,
                ConfigError("x"): 500, AgenticError("x"): 500}
    assert {type(error).__name__: error.http_status for error in statuses} == \
        {type(error).__name__: status for error, status in statuses.items()}


# -- the local entry ------------------------------------------------------------------------


def test_finish_names_the_stop_string_that_ended_the_answer():
    """Two stop strings from the free answer: the one that comes first ends it, and the
    Finish (and the Response) say which, with the text cut just before it."""
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.generation.local import LocalGeneration
    from agentic_onnx.core.generation.options import build_options

    local = LocalGeneration(load_model(open_model_folder(MODELS / MODEL), "cpu", threads=1))
    free = finished(*local.stream(ChatRequest.of(HELLO, options=build_options(max_tokens=24))))
    text = free.text
    assert len(text) > 12, text
    early, late = text[4:7], text[9:12]
    first = min(text.find(early), text.find(late))
    stops = (late, early)
    request = ChatRequest.of(HELLO, options=build_options(max_tokens=24, stop=list(stops)))
    stopped = finished(*local.stream(request))
    ended_by = early if text.find(early) == first else late
    assert stopped.text == text[:first]
    assert (stopped.finish_reason, stopped.stop_sequence) == ("stop", ended_by)
    assert free.stop_sequence is None


def test_the_usage_says_how_much_of_the_prompt_came_from_the_cache():
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.generation.local import LocalGeneration
    from agentic_onnx.core.generation.options import build_options

    local = LocalGeneration(load_model(open_model_folder(MODELS / MODEL), "cpu", threads=1))
    options = build_options(max_tokens=4)
    first = list(local.stream(ChatRequest.of(HELLO, options=options), tenant="a"))
    answer = "".join(event.text for event in first if isinstance(event, TextDelta))
    longer = ChatRequest.of([*HELLO, {"role": "assistant", "content": answer},
                             {"role": "user", "content": "Again."}], options=options)
    again = list(local.stream(longer, tenant="a"))
    reused = local.last.reused_tokens
    other = list(local.stream(longer, tenant="b"))
    usage = next(event for event in again if isinstance(event, Usage))
    start = next(event for event in again if isinstance(event, FirstToken))
    assert usage.cached_tokens == reused
    assert 0 < usage.cached_tokens < usage.prompt_tokens
    assert (start.prompt_tokens, start.cached_tokens) == (usage.prompt_tokens, usage.cached_tokens)
    assert next(e for e in other if isinstance(e, Usage)).cached_tokens == 0  # another tenant
    assert next(e for e in first if isinstance(e, Usage)).cached_tokens == 0


# -- serve checks answers, and logs them ---------------------------------------------------


@pytest.fixture
def server():
    """A server of its own: its usage log is this test's home."""
    served = Server("--model", str(MODELS / MODEL), "--threads", "1").start()
    yield served
    served.stop()


def test_serve_reports_an_answer_that_does_not_match_its_schema(server):
    from agentic_onnx.router import usage as usage_log

    body = {"messages": HELLO, "max_tokens": 3, "response_format": {
        "type": "json_schema", "json_schema": {"name": "place", "schema": CITY}}}
    status, _, answer = http("POST", f"{server.url}/v1/chat/completions", body)
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid_answer"
    assert "token budget ran out" in answer["error"]["message"]
    kept = answer["completion"]["choices"][0]
    assert kept["finish_reason"] == "length" and kept["message"]["content"]  # nothing is lost

    stream = server.openai_client().chat.completions.create(
        messages=HELLO, model=MODEL, max_tokens=3, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": CITY}})
    import openai

    with pytest.raises(openai.APIError, match="token budget ran out"):
        for _ in stream:
            pass

    tools = [{"name": "where", "input_schema": CITY}]
    status, _, reply = http("POST", f"{server.url}/v1/messages", {
        "model": MODEL, "max_tokens": 2, "messages": HELLO, "tools": tools,
        "tool_choice": {"type": "any"}})
    assert status == 422 and reply["type"] == "error", reply
    assert reply["message"]["stop_reason"] == "max_tokens"

    short = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
             "additionalProperties": False}  # the grammar leaves no room for a long answer
    good = http("POST", f"{server.url}/v1/chat/completions", {
        "messages": HELLO, "max_tokens": 40, "response_format": {
            "type": "json_schema", "json_schema": {"name": "flag", "schema": short}}})
    assert good[0] == 200, good
    assert set(json.loads(good[2]["choices"][0]["message"]["content"])) == {"ok"}
    rows = usage_log.rows()
    assert [(row["command"], row["outcome"]) for row in rows] == [
        ("serve:openai", "invalid"), ("serve:openai", "invalid"), ("serve:anthropic", "invalid"),
        ("serve:openai", "ok")]
    assert all(row["completion_tokens"] > 0 and row["cost_usd"] == 0.0 for row in rows)
    # TTFT is to the first visible output: a tool call cut off by the budget showed none.
    assert [row["ttft_ms"] is not None for row in rows] == [True, True, False, True]


# -- one set of local settings -------------------------------------------------------------


def test_run_chat_serve_and_onnx_benchmark_load_with_the_configs_ep_and_threads(
        monkeypatch, hermetic_env):
    """The config's local entry (threads 1, executionProviders [cpu]) reaches every command
    that loads a model: what each hands to the engine's load_model is recorded."""
    from agentic_onnx.cli import serve as serve_cli
    from agentic_onnx.cli.main import main
    from agentic_onnx.core.generation import engine
    config = hermetic_env / "config.json"  # the user's own config, under the home
    config.write_text(json.dumps({"providers": {"onnx": {
        "type": "onnx", "threads": 1, "executionProviders": ["cpu"]}}}), encoding="utf-8")
    seen: dict[str, tuple[str, int | None]] = {}
    real_load = engine.load_model

    def recording(folder, execution_provider="auto", threads=None, **kwargs):  # noqa: ANN001
        seen[command] = (execution_provider, threads)
        return real_load(folder, execution_provider, threads, **kwargs)

    def load_pool(specs, host, port, api_key, max_queue, execution_provider, threads, guard,
                  **_):  # noqa: ANN001, ANN003 - serve's pool, loaded without the HTTP part
        from agentic_onnx.server.pool import ModelPool

        pool = ModelPool(specs, execution_provider, threads, max_queue)
        pool.load()
        pool.close()

    monkeypatch.setattr(engine, "load_model", recording)
    monkeypatch.setattr(serve_cli, "_run_server", load_pool)
    model = str(MODELS / MODEL)
    commands = {
        "run": ["run", "-m", model, "-t", "Hi", "--max-tokens", "2"],
        "chat": ["chat", "-m", model, "--max-tokens", "2"],
        "serve": ["serve", "-m", model],
        "onnx test": ["onnx", "test", "-m", model],
        "onnx benchmark": ["onnx", "benchmark", "-m", model, "--prompt-tokens", "4",
                           "--gen-tokens", "2", "-n", "1", "--warmup", "0"],
    }
    for command, argv in commands.items():
        monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\n"))
        assert main(argv) == 0, command
    assert seen == {command: ("cpu", 1) for command in commands}


def test_a_chat_turn_is_a_usage_row(monkeypatch):
    from agentic_onnx.cli.main import main
    from agentic_onnx.router import usage as usage_log

    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\nAnd again.\n"))
    assert main(["chat", "-m", str(MODELS / MODEL), "--max-tokens", "3", "--threads", "1"]) == 0
    rows = usage_log.rows()
    assert [(row["command"], row["provider"], row["outcome"]) for row in rows] == \
        [("chat", "onnx", "ok")] * 2
    assert all(1 <= row["completion_tokens"] <= 3 and row["cost_usd"] == 0.0 for row in rows)
    assert rows[0]["ttft_ms"] is not None and rows[0]["latency_ms"] >= rows[0]["ttft_ms"]


def test_a_prompt_longer_than_the_context_is_a_400_with_openais_code(server):
    """tiny-phi3 holds 512 tokens; the code is what a client (our service's chat) acts on."""
    long = [{"role": "user", "content": "words about the weather " * 200}]
    status, _, answer = http("POST", f"{server.url}/v1/chat/completions",
                             {"messages": long, "max_tokens": 4})
    assert status == 400, answer
    assert answer["error"]["code"] == "context_length_exceeded"
    assert "context holds 512" in answer["error"]["message"]
