"""KV-cache slots: several conversations keep their KV caches on one model, each reused only
within its tenant, bounded by a count and a byte budget (core.generation.prefix_cache)."""

from __future__ import annotations

import pytest

from agentic_onnx.core.answers.structured import json_mode
from agentic_onnx.core.generation.engine import load_model
from agentic_onnx.core.generation.events import Finish, TextDelta, Usage
from agentic_onnx.core.generation.kv_budget import kv_layout
from agentic_onnx.core.generation.local import LocalGeneration
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.core.generation.prefix_cache import common_prefix_length
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.models.model_folder import open_model_folder

from .conftest import MODELS
from .server_support import Server, http

FP32 = ["tiny-phi3-fp32", "tiny-qwen2-fp32"]
GREEDY = build_options(max_tokens=12)
QUESTIONS = ["Name three colors of the rainbow.", "What is two plus two?",
             "Tell me more about that, please.", "And one plus one?"]


def loaded(name: str):
    return load_model(open_model_folder(MODELS / name), "cpu", threads=1)


def answer(events) -> tuple[str, Usage, Finish]:
    events = list(events)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text, next(e for e in events if isinstance(e, Usage)), events[-1]


class Agent:
    """One conversation sent whole every turn, as an agent does; what each turn reused."""

    def __init__(self, name: str, tenant: str = "") -> None:
        self.messages = [{"role": "system", "content": f"You are agent {name}. Be brief."}]
        self.tenant = tenant
        self.cached: list[int] = []  # per turn, the usage's cached_tokens
        self.kept: list[int] = []  # per turn, what the KV cache held of it afterwards (fed)

    def turn(self, local: LocalGeneration, text: str, check_against=None) -> int:  # noqa: ANN001
        """Send the next turn; with `check_against` (the plain model), the answer must equal a
        fresh generation over the same history. Returns the cached tokens."""
        self.messages.append({"role": "user", "content": text})
        request = ChatRequest.of(self.messages, options=GREEDY)
        got, usage, finish = answer(local.stream(request, self.tenant))
        if check_against is not None:
            fresh_text, fresh_usage, fresh_finish = answer(check_against.stream(self.messages, GREEDY))
            assert (got, finish) == (fresh_text, fresh_finish)
            assert (usage.prompt_tokens, usage.completion_tokens) == \
                (fresh_usage.prompt_tokens, fresh_usage.completion_tokens)
        prompt = local.model.encode(local.model.render_prompt(self.messages))
        # the sequence the generator holds: the prompt and the answer but its last token (EOS,
        # which genai does not add, or the one sampled and not fed yet)
        self.kept.append(prompt + local.cache.generated_ids[:-1])
        self.messages.append({"role": "assistant", "content": got})
        self.cached.append(usage.cached_tokens)
        return usage.cached_tokens


def interleave(local: LocalGeneration, agents: list[Agent], turns: int, oracle=None) -> None:  # noqa: ANN001
    for index in range(turns):
        for agent in agents:
            agent.turn(local, QUESTIONS[index % len(QUESTIONS)], oracle)


def expected_reuse(local: LocalGeneration, agent: Agent, turn: int) -> int:
    """What turn `turn` reuses when its conversation kept its cache: the common prefix of the
    previous turn's prompt+answer with this turn's prompt."""
    prompt = local.model.encode(local.model.render_prompt(agent.messages[:2 * turn + 2]))
    return common_prefix_length(agent.kept[turn - 1], prompt)


@pytest.mark.parametrize("name", FP32)
@pytest.mark.parametrize("count", [2, 3])
def test_interleaved_conversations_each_keep_their_history_cached(name, count):
    model = loaded(name)
    local = LocalGeneration(model, slots=count)
    agents = [Agent(str(i)) for i in range(count)]
    interleave(local, agents, 4, oracle=model)  # every greedy answer equals a fresh generation
    for agent in agents:
        assert agent.cached[0] == 0
        for turn in range(1, 4):
            previous_prompt = len(local.model.encode(local.model.render_prompt(
                agent.messages[:2 * turn])))
            assert agent.cached[turn] == expected_reuse(local, agent, turn) > previous_prompt
    assert local.kv_usage()["slots"] == count


@pytest.mark.parametrize("count", [2, 3])
def test_with_one_slot_interleaved_conversations_evict_each_other(count):
    model = loaded("tiny-phi3-fp32")
    local = LocalGeneration(model)  # one slot, as before slots
    agents = [Agent(str(i)) for i in range(count)]
    interleave(local, agents, 3)
    for agent in agents:
        for turn in range(1, 3):
            previous_prompt = len(local.model.encode(local.model.render_prompt(
                agent.messages[:2 * turn])))
            assert agent.cached[turn] < previous_prompt  # the template's head at most
            assert agent.cached[turn] < expected_reuse(local, agent, turn)
    assert local.kv_usage()["slots"] == 1


def test_another_tenant_never_reuses_a_slot_even_with_the_same_prompt():
    model = loaded("tiny-qwen2-fp32")
    local = LocalGeneration(model, slots=4)
    alice, bob = Agent("A", tenant="alice"), Agent("A", tenant="bob")
    alice.turn(local, QUESTIONS[0])
    bob.turn(local, QUESTIONS[0])  # the very prompt alice's slot holds
    assert alice.messages[:2] == bob.messages[:2] and bob.cached == [0]
    assert alice.turn(local, QUESTIONS[1], model) == expected_reuse(local, alice, 1) > 0
    assert bob.turn(local, QUESTIONS[1], model) == expected_reuse(local, bob, 1) > 0  # its own
    carol = Agent("A", tenant="carol")
    carol.messages = list(alice.messages[:-2])  # alice's whole conversation, resent
    carol.turn(local, QUESTIONS[1])
    assert carol.cached == [0]
    assert local.kv_usage()["slots"] == 3


@pytest.mark.parametrize("name", FP32)
def test_another_tenants_slot_is_recycled_without_its_tokens(name):
    """Full slots and a new tenant: the least recently used slot's generator (its whole-context
    KV cache, seconds to allocate on a large model) serves the new tenant, rewound to nothing:
    no token reused, the answer a fresh generation's."""
    model = loaded(name)
    local = LocalGeneration(model, slots=1)
    alice, bob = Agent("A", tenant="alice"), Agent("A", tenant="bob")
    alice.turn(local, QUESTIONS[0])
    kept = local.cache._slots[0].generator
    bob.turn(local, QUESTIONS[0], model)  # alice's very prompt: still nothing reused
    assert bob.cached == [0]
    [slot] = local.cache._slots
    assert slot.tenant == "bob" and slot.generator is kept
    assert bob.turn(local, QUESTIONS[1], model) == expected_reuse(local, bob, 1) > 0  # its own
    alice.turn(local, QUESTIONS[1], model)  # back to alice: her old tokens are gone
    assert alice.cached[-1] == 0


def test_a_request_with_a_grammar_leaves_the_slots_alone_while_the_budget_has_room():
    """A JSON-mode request runs on a generator of its own: its KV cache counts in the budget,
    and only when it does not fit does the least recently used slot go."""
    model = loaded("tiny-phi3-fp32")
    slot = kv_layout(model).slot_bytes(0)
    json_request = ChatRequest.of([{"role": "user", "content": "JSON please."}],
                                  options=GREEDY, response_format=json_mode())
    for budget, kept in [(3 * slot, [True, True]), (2 * slot, [False, True])]:
        local = LocalGeneration(model, slots=2, kv_budget_bytes=budget)
        agents = [Agent("A"), Agent("B")]
        interleave(local, agents, 1)
        answer(local.stream(json_request))  # the slots are full: does it fit beside them?
        reused = [agent.turn(local, QUESTIONS[1]) == expected_reuse(local, agent, 1)
                  for agent in agents]
        assert reused == kept, budget


def test_the_least_recently_used_slot_is_evicted_when_the_count_is_reached():
    model = loaded("tiny-phi3-fp32")
    local = LocalGeneration(model, slots=2)
    a, b, c = Agent("A"), Agent("B"), Agent("C")
    a.turn(local, QUESTIONS[0])
    b.turn(local, QUESTIONS[0])
    a.turn(local, QUESTIONS[1])  # b is now the least recently used
    c.turn(local, QUESTIONS[0])  # a third conversation: b's slot goes
    assert local.kv_usage()["slots"] == 2
    assert a.turn(local, QUESTIONS[2], model) == expected_reuse(local, a, 2) > 0  # kept
    # b's history is gone: it takes over the least recently used slot (c's, same tenant) and
    # keeps only what the two prompts share, the chat template's head
    c_prompt = model.encode(model.render_prompt(c.messages[:2]))
    b.turn(local, QUESTIONS[1], model)
    b_prompt = model.encode(model.render_prompt(b.messages[:4]))
    assert b.cached[1] == common_prefix_length(c_prompt, b_prompt) < expected_reuse(local, b, 1)


def test_the_byte_budget_bounds_the_slots_and_evicts_the_least_recently_used():
    model = loaded("tiny-phi3-fp32")
    layout = kv_layout(model)
    # tiny-phi3: 2 x 2 layers x 4 KV heads x 16 x fp32 = 1 KiB per token; genai allocates a
    # kept generator's whole context (512 tokens) at once
    assert layout is not None and (layout.bytes_per_token, layout.preallocated) == (1024, True)
    assert layout.slot_bytes(10) == 512 * 1024
    local = LocalGeneration(model, slots=8, kv_budget_bytes=2 * layout.slot_bytes(0) + 1000)
    assert local.kv_usage() == {"slots": 0, "max_slots": 2, "mb": 0.0, "budget_mb": 1.0}
    a, b, c = Agent("A", "t1"), Agent("B", "t2"), Agent("C", "t3")
    a.turn(local, QUESTIONS[0])
    b.turn(local, QUESTIONS[0])
    a.turn(local, QUESTIONS[1])
    c.turn(local, QUESTIONS[0])  # over the budget: the least recently used slot (b's) goes
    assert local.kv_usage()["slots"] == 2 and local.kv_usage()["mb"] == 1.0
    assert a.turn(local, QUESTIONS[2]) == expected_reuse(local, a, 2) > 0
    assert b.turn(local, QUESTIONS[1]) == 0  # evicted; another tenant's slot is never reused
    assert c.turn(local, QUESTIONS[1]) == 0  # c was the least recently used, and went for b


def test_chat_keeps_one_slot_and_no_budget():
    from agentic_onnx.core.generation.conversation import Conversation

    conversation = Conversation(loaded("tiny-phi3-fp32"))
    assert conversation.cache.max_slots == 1 and conversation.cache.budget_bytes is None
    assert conversation.cache.layout is None  # no probe, no budget: one generator, as before


def test_served_interleaved_conversations_both_report_cached_tokens():
    """Through a real server, one tenant (no labels): two agents interleave their turns."""
    served = Server("--model", str(MODELS / "tiny-phi3-fp32"), "--threads", "1").start()
    try:
        histories = [[{"role": "system", "content": f"You are agent {name}. Be brief."}]
                     for name in "AB"]
        cached: list[list[int]] = [[], []]
        for question in QUESTIONS[:3]:
            for index, messages in enumerate(histories):
                messages.append({"role": "user", "content": question})
                status, _, body = http("POST", f"{served.url}/v1/chat/completions",
                                       {"messages": messages, "max_tokens": 8})
                assert status == 200, body
                messages.append({"role": "assistant",
                                 "content": body["choices"][0]["message"]["content"]})
                cached[index].append(body["usage"]["prompt_tokens_details"]["cached_tokens"])
        status, _, health = http("GET", f"{served.url}/health")
    finally:
        served.stop()
    for counts in cached:
        assert counts[0] == 0 and all(count > 0 for count in counts[1:]), cached
    # each later turn reuses more: its own growing history, not a head the two share
    assert all(later > earlier for counts in cached for earlier, later in zip(counts[1:], counts[2:]))
    kv = health["models"][0]["kv_cache"]
    assert (kv["slots"], kv["max_slots"]) == (2, 4)


def test_serve_passes_its_slot_count_and_budget_to_each_model():
    from agentic_onnx.server.pool import ModelPool, ModelSpec

    pool = ModelPool([ModelSpec("tiny", open_model_folder(MODELS / "tiny-phi3-fp32"))], "cpu", 1,
                     kv_slots=3, kv_cache_mb=1.0)  # 1 MiB: two slots of 0.5 MiB
    pool.load()
    try:
        assert pool.status()[0]["kv_cache"] == {"slots": 0, "max_slots": 2, "mb": 0.0,
                                                "budget_mb": 1.0}
    finally:
        pool.close()


@pytest.mark.parametrize("option", [["--kv-cache-slots", "0"], ["--kv-cache-slots", "257"],
                                    ["--kv-cache-mb", "0"], ["--kv-cache-mb", "-5"]])
def test_serve_refuses_a_slot_count_or_budget_out_of_range(option, capsys):
    from agentic_onnx.cli.main import main

    assert main(["serve", *option]) == 2
    assert option[0] in capsys.readouterr().err
