"""Batched decoding (core/generation/batch.py): requests stepped together by one generator give
the same greedy replies as each alone (tokens, text, usage, finish), in whatever order their
streams are read, each ending on its own (EOS, stop string, max_tokens); requests that cannot
share a generator are told apart before anything runs."""

from __future__ import annotations

import pytest

from agentic_onnx.core.generation.batch import Batch, batch_key, batchable, plan_batch
from agentic_onnx.core.generation.engine import load_model
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response
from agentic_onnx.core.models.model_folder import open_model_folder

from .conftest import MODELS

PROMPTS = ["Hello there, how are you today my friend? Tell me about the sea.", "Hi",
           "Write a poem about the sea and the sky"]


def loaded(name: str):
    return load_model(open_model_folder(MODELS / name), "cpu", threads=1)


def request(text: str, **options) -> ChatRequest:  # noqa: ANN003
    return ChatRequest.of([{"role": "user", "content": text}], options=build_options(**options))


def answer(events) -> dict:  # noqa: ANN001
    done = Response(events, "onnx", "m").consume()
    return {"text": done.text, "usage": (done.usage.prompt_tokens, done.usage.completion_tokens),
            "finish": done.finish_reason, "stop": done.stop_sequence}


def alone(model, req: ChatRequest) -> dict:  # noqa: ANN001
    return answer(model.stream(req.messages, req.options))


@pytest.mark.parametrize("name", ["tiny-phi3-fp32", "tiny-qwen2-fp32", "tiny-phi3-int4"])
def test_batched_greedy_replies_equal_the_same_requests_alone(name):
    model = loaded(name)
    requests = [request(PROMPTS[0], max_tokens=12), request(PROMPTS[1], max_tokens=20),
                request(PROMPTS[2], max_tokens=7)]
    batch = plan_batch(model, requests)
    assert batch is not None and batch.width > min(map(len, batch.prompts))  # padding in play
    streams = batch.streams()
    # read out of order: the last one first, then the others
    batched = {2: answer(streams[2]), 0: answer(streams[0]), 1: answer(streams[1])}
    assert [batched[i] for i in range(3)] == [alone(model, r) for r in requests]


def test_each_reply_ends_on_its_own_stop_string():
    model = loaded("tiny-qwen2-fp32")
    reference = alone(model, request(PROMPTS[2], max_tokens=12))
    stop = reference["text"][3:6]  # a string the greedy reply produces early
    requests = [request(PROMPTS[2], max_tokens=12, stop=[stop]), request(PROMPTS[0], max_tokens=12)]
    first, second = plan_batch(model, requests).streams()
    stopped, other = answer(first), answer(second)
    assert stopped == alone(model, requests[0]) and stopped["stop"] == stop
    assert other == alone(model, requests[1])


def test_a_closed_stream_leaves_the_others_whole():
    model = loaded("tiny-phi3-fp32")
    requests = [request(PROMPTS[0], max_tokens=10), request(PROMPTS[2], max_tokens=10)]
    first, second = plan_batch(model, requests).streams()
    next(first)
    first.close()  # its client went away
    assert answer(second) == alone(model, requests[1])


def test_what_may_share_a_generator():
    assert batchable(request("x")) and batchable(request("x", temperature=0.7))
    assert not batchable(request("x", temperature=0.7, seed=3))  # a seed replays alone
    from agentic_onnx.core.answers.structured import json_mode
    from agentic_onnx.core.answers.tool_spec import Tool

    message = [{"role": "user", "content": "x"}]
    assert not batchable(ChatRequest.of(message, adapter="lora"))
    assert not batchable(ChatRequest.of(message, response_format=json_mode()))
    assert not batchable(ChatRequest.of(message, tools=[Tool("f", "", {"type": "object"})]))
    assert batch_key(request("a", max_tokens=3)) == batch_key(request("b", max_tokens=9))
    assert batch_key(request("a", temperature=0.5)) != batch_key(request("a", temperature=0.6))
    model = loaded("tiny-phi3-fp32")
    assert plan_batch(model, [request("only one")]) is None
    context = model.folder.context_length
    long_prompt = "sea " * (context // 16)
    # the short prompt could grow to the context alone; padded to the long one it could not
    assert plan_batch(model, [request(long_prompt), request("b", max_tokens=context)]) is None
    assert isinstance(plan_batch(model, [request(long_prompt, max_tokens=context),
                                         request("b", max_tokens=8)]), Batch)


# -- in serve's worker: waiting requests decode together --------------------------------------

def test_waiting_requests_decode_together_in_the_worker_and_answer_as_alone():
    import threading

    from agentic_onnx.core.models.model_folder import open_model_folder
    from agentic_onnx.server.pool import ModelPool, ModelSpec

    pool = ModelPool([ModelSpec("tiny", open_model_folder(MODELS / "tiny-qwen2-fp32"))], "cpu", 1,
                     batch_size=3)
    pool.load()
    worker = pool.worker_for("tiny")
    release, first_started = threading.Event(), threading.Event()
    finished = {index: threading.Event() for index in range(4)}
    answers: dict[int, object] = {}

    def deliver(index: int):  # noqa: ANN202
        def receive(item) -> None:  # noqa: ANN001
            if index == 0 and not first_started.is_set():
                first_started.set()
                release.wait(timeout=30)  # hold the worker while the others queue up
            if isinstance(item, (Response, Exception)):  # the end: its Response, or its error
                answers[index] = item
                finished[index].set()
        return receive

    try:
        requests = [request(PROMPTS[0], max_tokens=6), request(PROMPTS[2], max_tokens=9),
                    request(PROMPTS[1], max_tokens=14), request(PROMPTS[2], max_tokens=5)]
        worker.submit(requests[0], deliver=deliver(0), log=False)
        assert first_started.wait(timeout=30)
        for index in (1, 2, 3):
            worker.submit(requests[index], deliver=deliver(index), log=False)
        release.set()
        assert all(event.wait(timeout=60) for event in finished.values())
        assert worker.status()["batched"] == 3  # the three that waited, together
        for index, req in enumerate(requests):
            done, expected = answers[index], alone(worker.model, req)
            assert (done.text, (done.usage.prompt_tokens, done.usage.completion_tokens),
                    done.finish_reason) == (expected["text"], expected["usage"],
                                            expected["finish"])
    finally:
        pool.close()


def test_a_conversations_next_turn_keeps_its_cache_instead_of_joining_a_batch():
    from agentic_onnx.core.generation.local import LocalGeneration

    local = LocalGeneration(loaded("tiny-qwen2-fp32"), slots=2)
    first = request(PROMPTS[0], max_tokens=4)
    reply = answer(local.stream(first, "alice"))["text"]
    turn = ChatRequest.of([*first.messages, {"role": "assistant", "content": reply},
                           {"role": "user", "content": "And then?"}],
                          options=build_options(max_tokens=4))
    assert local.continues(turn, "alice")
    assert not local.continues(turn, "bob")  # another tenant's cache is not its
    assert not local.continues(request(PROMPTS[1]), "alice")  # the same template, a new prompt


def test_concurrent_sdk_clients_of_serve_get_the_answers_they_get_alone(tmp_path):
    """Through a real `serve` and the OpenAI SDK: one request holds the model (a gate on its
    decode steps), three queue behind it, and when the gate opens they decode as one batch."""
    import threading

    from .server_support import Server

    gate = tmp_path / "gate"
    served = Server("--model", str(MODELS / "tiny-qwen2-fp32"), "--threads", "1",
                    "--batch-size", "4", decode_gate=gate).start()
    try:
        client = served.openai_client()

        def ask(text: str, max_tokens: int, user: str) -> str:
            # each `user` is a tenant of its own: no request finds another's kept KV cache
            reply = client.chat.completions.create(
                model="tiny-qwen2-fp32", messages=[{"role": "user", "content": text}],
                max_tokens=max_tokens, temperature=0, user=user)
            return reply.choices[0].message.content or ""

        asks = [(PROMPTS[0], 6), (PROMPTS[1], 12), (PROMPTS[2], 9), (PROMPTS[0] + "!", 7)]
        alone = [ask(text, tokens, "alone") for text, tokens in asks]  # one at a time
        assert served.health()["models"][0]["batched"] == 0
        gate.touch()
        answers: dict[int, str] = {}
        threads = [threading.Thread(
            target=lambda i=i: answers.__setitem__(i, ask(*asks[i], f"client-{i}")))
            for i in range(4)]
        threads[0].start()
        served.wait_for(lambda model: model["running"] == 1)
        for thread in threads[1:]:
            thread.start()
        served.wait_for(lambda model: model["waiting"] == 3)
        gate.unlink()
        for thread in threads:
            thread.join(timeout=60)
        assert [answers[i] for i in range(4)] == alone
        assert served.health()["models"][0]["batched"] == 3
    finally:
        served.stop()
