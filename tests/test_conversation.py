"""KV-cache reuse across turns, checked against fresh generations over the whole history."""

from __future__ import annotations

import pytest

from agentic_onnx.core.generation.conversation import Conversation
from agentic_onnx.core.generation.prefix_cache import PrefixCache, common_prefix_length
from agentic_onnx.core.generation.engine import load_model
from agentic_onnx.core.errors import PromptTooLongError
from agentic_onnx.core.generation.events import Finish, TextDelta, Usage
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.generation.options import build_options

from .conftest import MODELS

FP32 = ["tiny-phi3-fp32", "tiny-qwen2-fp32"]
GREEDY = build_options(max_tokens=24)
TURNS = ["Hello! How are you today?", "Name three colors of the rainbow.",
         "What is two plus two? " * 6, "Tell me more about that, please.", "ok",
         "def add(a, b):\n    return a + b"]


def loaded(name: str):
    return load_model(open_model_folder(MODELS / name), "cpu", threads=1)


def fresh(model, messages, options=GREEDY) -> tuple[str, Usage, Finish]:
    """A generation with no cache at all: the oracle for every reused one."""
    events = list(model.stream(messages, options))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text, next(e for e in events if isinstance(e, Usage)), events[-1]


def consume(events) -> tuple[str, Usage, Finish]:
    """Text, usage and finish; the usage without `cached_tokens` (a fresh generation has none),
    which `last_cached` keeps for the tests that check it."""
    global last_cached
    events = list(events)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    usage = next(e for e in events if isinstance(e, Usage))
    last_cached = usage.cached_tokens
    return text, Usage(usage.prompt_tokens, usage.completion_tokens), events[-1]


last_cached = 0


def test_turn_two_appends_only_the_new_turns_tokens():
    model = loaded("tiny-phi3-fp32")
    conversation = Conversation(model, system="Be brief.")
    first_prompt = model.encode(model.render_prompt(
        conversation.messages + [{"role": "user", "content": "Hello!"}]))
    answer, usage, finish = consume(conversation.send("Hello!", GREEDY))
    reply = conversation.cache.generated_ids
    assert finish == Finish("stop") and reply[-1] in model.eos_ids()  # the reply closed the turn
    reply_body = reply[:-1]
    assert model.encode(answer) == reply_body  # precondition: the answer re-encodes to its tokens

    consume(conversation.send("And one plus one?", GREEDY))

    second_prompt = model.encode(model.render_prompt(conversation.messages[:-1]))
    history = first_prompt + reply_body
    assert second_prompt[:len(history)] == history  # the template makes history a token prefix
    turn = conversation.last
    assert turn.reused_tokens == len(history)
    assert turn.appended_ids == tuple(second_prompt[len(history):])
    # ... which are the rendered history's new text: the end of answer one and the new turn.
    first_text = model.render_prompt(conversation.messages[:2])
    second_text = model.render_prompt(conversation.messages[:-1])
    assert second_text.startswith(first_text + answer)
    assert second_text[len(first_text + answer):] == \
        "<|end|>\n<|user|>\nAnd one plus one?<|end|>\n<|assistant|>\n"
    assert len(turn.appended_ids) < len(second_prompt) - len(first_prompt)
    assert conversation.history[0].appended_ids == tuple(first_prompt)  # turn one: everything


@pytest.mark.parametrize("name", FP32)
def test_every_greedy_turn_equals_a_fresh_generation_over_the_whole_history(name):
    model = loaded(name)
    conversation = Conversation(model, system="You are a concise assistant.")
    for text in TURNS:
        got = consume(conversation.send(text, GREEDY))
        assert got == fresh(model, conversation.messages[:-1]), f"turn {text!r}"
        assert conversation.messages[-1] == {"role": "assistant", "content": got[0]}
        assert last_cached == conversation.last.reused_tokens  # the usage says what was reused
    reused = [turn.reused_tokens for turn in conversation.history]
    assert reused[0] == 0 and all(count > 0 for count in reused[1:])


@pytest.mark.parametrize("name", FP32)
def test_a_prompt_that_leaves_the_cached_prefix_is_rewound_to_the_common_prefix(name):
    model = loaded(name)
    cache = PrefixCache(model)
    system = {"role": "system", "content": "You are a concise assistant."}
    first = [system, {"role": "user", "content": "Name three colors of the rainbow."}]
    second = [system, {"role": "user", "content": "What is two plus two?"}]
    consume(cache.stream(first, GREEDY))
    cached = model.encode(model.render_prompt(first)) + cache.generated_ids
    got = consume(cache.stream(second, GREEDY))
    second_ids = model.encode(model.render_prompt(second))
    assert cache.last.rewound
    assert cache.last.reused_tokens == common_prefix_length(cached, second_ids) > 0
    assert got == fresh(model, second)


def test_the_same_prompt_twice_gives_the_same_answer():
    model = loaded("tiny-qwen2-fp32")
    cache = PrefixCache(model)
    messages = [{"role": "user", "content": "Hello! How are you today?"}]
    first, second = consume(cache.stream(messages, GREEDY)), consume(cache.stream(messages, GREEDY))
    assert first == second == fresh(model, messages)
    assert cache.last.appended_ids == tuple(model.encode(model.render_prompt(messages))[-1:])


def test_seeded_sampling_is_reproducible_through_the_cache():
    model = loaded("tiny-phi3-fp32")
    cache = PrefixCache(model)
    options = build_options(temperature=1.0, top_k=20, seed=7, max_tokens=16)
    messages = [{"role": "user", "content": "Hello! How are you today?"}]
    assert consume(cache.stream(messages, options)) == consume(cache.stream(messages, options))


def test_clear_keeps_the_system_prompt_and_answers_as_a_new_conversation():
    model = loaded("tiny-phi3-fp32")
    conversation = Conversation(model, system="Be brief.")
    consume(conversation.send("Hello! How are you today?", GREEDY))
    conversation.clear()
    assert conversation.messages == [{"role": "system", "content": "Be brief."}]
    got = consume(conversation.send("Name three colors of the rainbow.", GREEDY))
    assert got == fresh(model, conversation.messages[:-1])
    assert len(conversation.messages) == 3
    assert conversation.last.reused_tokens > 0  # the system prompt stayed in the cache


def test_the_context_filling_up_drops_the_oldest_turns_and_keeps_the_system_prompt():
    model = loaded("tiny-phi3-fp32")  # 512 tokens of context
    notices: list[str] = []
    conversation = Conversation(model, system="Be brief.", on_notice=notices.append)
    long_turn = "Please summarise this: " + "colors of the rainbow and numbers " * 12
    assert len(model.encode(long_turn)) > 100
    for index in range(8):
        got = consume(conversation.send(f"{index}. {long_turn}", GREEDY))
        assert got == fresh(model, conversation.messages[:-1])
        prompt = model.encode(model.render_prompt(conversation.messages[:-1]))
        assert len(prompt) + conversation.reserve_tokens(GREEDY) <= model.folder.context_length
    dropped = [turn.dropped_messages for turn in conversation.history]
    assert sum(dropped) > 0 and dropped[0] == 0
    assert notices and "dropped" in notices[0]
    assert conversation.messages[0] == {"role": "system", "content": "Be brief."}
    assert conversation.messages[1]["content"] != f"0. {long_turn}"  # the oldest turn is gone
    assert conversation.messages[-2]["content"] == f"7. {long_turn}"  # the newest stays


def test_an_answer_stopped_early_keeps_what_was_shown_and_the_next_turn_is_exact():
    model = loaded("tiny-qwen2-fp32")
    conversation = Conversation(model)
    events = conversation.send("Hello! How are you today?", GREEDY)
    shown = []
    for event in events:
        if isinstance(event, TextDelta):
            shown.append(event.text)
            if len(shown) == 3:
                break
    events.close()  # as Ctrl-C does
    assert conversation.messages[-1] == {"role": "assistant", "content": "".join(shown)}
    got = consume(conversation.send("Name three colors of the rainbow.", GREEDY))
    assert got == fresh(model, conversation.messages[:-1])


def test_a_turn_longer_than_the_context_is_an_error_and_leaves_the_history_as_it_was():
    model = loaded("tiny-phi3-fp32")
    conversation = Conversation(model, system="Be brief.")
    consume(conversation.send("Hello!", GREEDY))
    before = list(conversation.messages)
    with pytest.raises(PromptTooLongError):
        consume(conversation.send("word " * (model.folder.context_length + 10), GREEDY))
    assert conversation.messages == before
    assert consume(conversation.send("Name three colors of the rainbow.", GREEDY)) == \
        fresh(model, conversation.messages[:-1])


def test_the_transcript_holds_the_messages_and_the_turn_counts():
    model = loaded("tiny-phi3-fp32")
    conversation = Conversation(model, system="Be brief.")
    consume(conversation.send("Hello!", GREEDY))
    transcript = conversation.to_json()
    assert transcript["model"] == "tiny-phi3-fp32"
    assert [m["role"] for m in transcript["messages"]] == ["system", "user", "assistant"]
    assert transcript["turns"][0]["appended_tokens"] == transcript["turns"][0]["prompt_tokens"]


def test_a_seeded_sampling_session_replays_as_a_whole_and_keeps_its_cache():
    model = loaded("tiny-qwen2-fp32")
    options = build_options(temperature=1.0, top_k=20, seed=3, max_tokens=12)

    def session() -> list[str]:
        conversation = Conversation(model)
        texts = [consume(conversation.send(text, options))[0] for text in TURNS[:3]]
        assert all(turn.reused_tokens > 0 for turn in conversation.history[1:])
        return texts

    assert session() == session()
