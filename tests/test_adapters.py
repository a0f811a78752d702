"""LoRA adapters (core/models/adapters.py): a tiny random PEFT LoRA on the tiny-qwen2 recipe, exported
with the genai builder at test time (a LoRA-ready base + `.onnx_adapter` files), checked token
for token against transformers + PEFT; without an adapter the base's own tokens; two adapters
on one base in `serve`, each request its own adapter's answer.

Needs torch, transformers and peft (dev only): skipped with the reason when they are missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest

from .conftest import FIXTURES, run_cli

pytest.importorskip("torch", reason="the LoRA fixture is built with torch (dev only)")
pytest.importorskip("transformers", reason="the LoRA fixture is built with transformers (dev only)")
pytest.importorskip("peft", reason="the LoRA fixture needs peft (pip install peft; dev only)")

MESSAGES = [{"role": "user", "content": "Hello! How are you today?"}]
NEW_TOKENS = 12
TARGETS = {"one": ["q_proj", "v_proj", "down_proj"], "two": ["q_proj", "v_proj", "down_proj"]}


def _make_models():
    from .import_support import make_models_module  # loads it without leaking its env settings

    return make_models_module()


def _peft(model, folder: Path, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # init_lora_weights=False: random, non-zero B, so the answer changes
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS["one"], lora_dropout=0.0,
                        init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder)
    peft_model.unload()  # the base modules come back unchanged for the next adapter


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    """A LoRA-ready tiny-qwen2 (`base/`, adapters `one` and `two` beside it), the HF checkpoint
    and the PEFT folders."""
    from agentic_onnx.core.models import adapters

    work = tmp_path_factory.mktemp("lora")
    make_models = _make_models()
    model, _, _ = make_models.build_hf_model("qwen2", make_models.FIXTURES["qwen2"], work / "hf")
    for index, name in enumerate(TARGETS):
        _peft(model, work / f"peft-{name}", seed=100 + index)
    base = work / "base"
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(work / "hf"),
               "-o", str(base), "-p", "fp32", "-e", "cpu", "-c", str(work / "cache"),
               "--extra_options", f"adapter_path={work / 'peft-one'}"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    shutil.rmtree(work / "cache", ignore_errors=True)
    adapters.make_lora_ready(base)
    for name in TARGETS:
        adapters.convert_peft_adapter(work / f"peft-{name}", base, "base",
                                      adapters.adapter_path(base, name))
    return work


def _hf_tokens(work: Path, peft_name: str | None) -> list[int]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work / "hf")
    model = AutoModelForCausalLM.from_pretrained(work / "hf").eval()
    if peft_name:
        model = PeftModel.from_pretrained(model, work / f"peft-{peft_name}").eval()
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=NEW_TOKENS, pad_token_id=0,
                             eos_token_id=2)
    return out[0, len(ids):].tolist()


def _engine_tokens(loaded, adapter: Path | None) -> list[int]:
    from agentic_onnx.core.generation.options import GenerationOptions

    prompt = loaded.encode(loaded.render_prompt(MESSAGES))
    return list(loaded.generate_tokens(prompt, GenerationOptions(max_tokens=NEW_TOKENS),
                                       adapter=adapter))


def test_adapter_tokens_equal_transformers_with_peft(lora):
    from agentic_onnx.core.models.adapters import installed_adapters
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.model_folder import open_model_folder

    loaded = load_model(open_model_folder(lora / "base"), "cpu", 1)
    files = installed_adapters(lora / "base")
    assert list(files) == ["one", "two"]
    base = _hf_tokens(lora, None)
    one, two = _hf_tokens(lora, "one"), _hf_tokens(lora, "two")
    assert len({tuple(base), tuple(one), tuple(two)}) == 3  # each adapter changes the answer
    assert _engine_tokens(loaded, None) == base
    assert _engine_tokens(loaded, files["one"]) == one
    assert _engine_tokens(loaded, files["two"]) == two
    assert _engine_tokens(loaded, None) == base  # an adapter is per generator, never sticky
    assert sorted(loaded.adapters.loaded()) == sorted(str(p) for p in files.values())


def test_prefix_cache_never_reuses_another_adapters_kv(lora):
    from agentic_onnx.core.models.adapters import installed_adapters
    from agentic_onnx.core.generation.prefix_cache import PrefixCache
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.model_folder import open_model_folder
    from agentic_onnx.core.generation.options import GenerationOptions

    loaded = load_model(open_model_folder(lora / "base"), "cpu", 1)
    files = installed_adapters(lora / "base")
    cache = PrefixCache(loaded)
    prompt = loaded.encode(loaded.render_prompt(MESSAGES))
    options = GenerationOptions(max_tokens=NEW_TOKENS)
    # the cache's loop runs to the context (the engine's events stop at max_tokens): take 12
    first = list(islice(cache.generate_tokens(prompt, options, files["one"]), NEW_TOKENS))
    again = list(islice(cache.generate_tokens(prompt, options, files["one"]), NEW_TOKENS))
    assert again == first and cache.last.reused_tokens > 0
    other = list(islice(cache.generate_tokens(prompt, options, files["two"]), NEW_TOKENS))
    assert cache.last.reused_tokens == 0
    assert other == _engine_tokens(loaded, files["two"])


def test_run_with_adapter_by_name_and_a_base_without_lora_inputs(lora, tmp_path):
    from agentic_onnx.core.models.adapters import AdapterError, AdapterNotFoundError, adapter_for
    from agentic_onnx.core.models.model_folder import open_model_folder

    folder = open_model_folder(lora / "base")
    assert adapter_for(folder, "two").name == "two.onnx_adapter"
    with pytest.raises(AdapterNotFoundError, match="has no adapter 'three'"):
        adapter_for(folder, "three")
    plain = open_model_folder(FIXTURES / "models" / "tiny-qwen2-fp32")
    with pytest.raises(AdapterError, match="built without LoRA inputs") as caught:
        adapter_for(plain, "one")
    assert "\n" not in caught.value.one_line()

    result = subprocess.run(
        [sys.executable, "-m", "agentic_onnx", "run", "--model", str(lora / "base"),
         "--adapter", "one", "--max-tokens", str(NEW_TOKENS), "--task", MESSAGES[0]["content"],
         "--json", "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["usage"]["completion_tokens"] >= 1


def test_serve_two_adapters_on_one_base(lora):
    from .server_support import Server, http

    expected = {}
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.model_folder import open_model_folder

    loaded = load_model(open_model_folder(lora / "base"), "cpu", 1)
    for name in (None, *TARGETS):
        file = None if name is None else lora / "base" / "adapters" / f"{name}.onnx_adapter"
        tokens = _engine_tokens(loaded, file)
        expected[name] = loaded.tokenizer.decode([t for t in tokens if t not in loaded.eos_ids()])

    server = Server("--model", str(lora / "base"), "--threads", "1").start()
    try:
        status, _, models = http("GET", f"{server.url}/v1/models")
        assert [m["id"] for m in models["data"]] == ["base", "base:one", "base:two"]
        client = server.openai_client()
        for name in ("two", None, "one", "two"):
            model = "base" if name is None else f"base:{name}"
            answer = client.chat.completions.create(model=model, messages=MESSAGES,
                                                    max_tokens=NEW_TOKENS)
            assert answer.choices[0].message.content == expected[name], name
            assert answer.model == model
        message = server.anthropic_client().messages.create(
            model="base:one", max_tokens=NEW_TOKENS, messages=MESSAGES)
        assert message.model == "base:one" and message.content[0].text == expected["one"]
        status, _, body = http("POST", f"{server.url}/v1/chat/completions",
                               {"model": "base:three", "messages": MESSAGES})
        assert status == 404
    finally:
        server.stop()


def test_import_adapter_command(lora, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(lora / "base", base)
    shutil.rmtree(base / "adapters")
    result = run_cli("onnx", "import", "--adapter", str(lora / "peft-two"), "--base", str(base),
                     "--name", "styled", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["adapter"] == "styled"
    assert (base / "adapters" / "styled.onnx_adapter").read_bytes() == \
        (lora / "base" / "adapters" / "two.onnx_adapter").read_bytes()
    plain = run_cli("onnx", "import", "--adapter", str(lora / "peft-two"), "--base",
                    str(FIXTURES / "models" / "tiny-qwen2-fp32"))
    assert plain.returncode == 2
    assert "built without LoRA inputs" in plain.stderr and len(plain.stderr.strip().splitlines()) == 1


def test_import_with_lora_builds_a_lora_ready_base_and_its_adapter(lora):
    """`onnx import HF --name N --lora PEFT`: one command from a checkpoint and its PEFT adapter
    to a base that takes adapters, with the adapter beside it."""
    from agentic_onnx.core.models.adapters import installed_adapters
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.model_folder import open_model_folder
    from agentic_onnx.core.models.store import model_dir

    refused = run_cli("onnx", "import", str(lora / "hf"), "--name", "lora-base", "--lora",
                      str(lora / "peft-one"), "-p", "int4")
    assert refused.returncode == 2 and "--lora needs an fp32 or fp16 model" in refused.stderr
    result = run_cli("onnx", "import", str(lora / "hf"), "--name", "lora-base", "--lora",
                     str(lora / "peft-one"), "--json", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = json.loads(result.stdout)  # one object: the base, its adapter inside
    assert (imported["id"], imported["adapter"]["adapter"]) == ("lora-base", "peft-one")
    files = installed_adapters(model_dir("lora-base"))
    assert list(files) == ["peft-one"]
    listed = run_cli("onnx", "list", "--json")
    [row] = json.loads(listed.stdout)
    assert [a["name"] for a in row["adapters"]] == ["peft-one"]  # listed under its base
    table = run_cli("onnx", "list").stdout
    assert table.index("lora-base") < table.index("+ peft-one")
    loaded = load_model(open_model_folder(model_dir("lora-base")), "cpu", 1)
    assert _engine_tokens(loaded, files["peft-one"]) == _hf_tokens(lora, "one")
    assert _engine_tokens(loaded, None) == _hf_tokens(lora, None)
