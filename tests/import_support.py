"""Sources for `onnx import` tests, built at test time from the committed tiny tokenizer recipe:
a random-weight Phi-3 checkpoint (tests/fixtures/make_models.py, seed 23: the same weights as the
tiny-phi3-fp32 fixture), its transformers greedy tokens (the oracle), an fp32 GGUF written from
the same tensors with the `gguf` package, and a quantized GGUF (Q8_0) the builder must refuse.

Needs torch and transformers (the `import` extra); the tests skip without them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
PROMPTS = ("hello", "system", "multibyte", "code")  # the recorded prompts, by name
MAX_NEW_TOKENS = 24

# Hugging Face Phi-3 tensor names -> GGUF names, as llama.cpp's convert_hf_to_gguf.py writes them
# (Phi-3 keeps the fused qkv and gate_up projections; the builder's GGUF loader splits them).
_GGUF_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
_GGUF_LAYER = {"self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output",
               "mlp.gate_up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
               "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def make_models_module():  # noqa: ANN201
    saved = dict(os.environ)  # it sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE for itself
    sys.path.insert(0, str(FIXTURES))
    try:
        import make_models
    finally:
        sys.path.remove(str(FIXTURES))
        os.environ.clear()
        os.environ.update(saved)
    return make_models


def build_checkpoint(folder: Path) -> list[dict]:
    """Write the tiny Phi-3 checkpoint into `folder`; return the transformers greedy oracle for
    PROMPTS: [{name, messages, prompt_ids, generated_ids, ...}]."""
    import torch

    mm = make_models_module()
    torch.set_num_threads(1)
    model, hf_tok, eos_ids = mm.build_hf_model("phi3", mm.FIXTURES["phi3"], folder)
    cases = []
    for prompt in mm.PROMPTS:
        if prompt["name"] in PROMPTS:
            case = mm.greedy_oracle(model, hf_tok, eos_ids, prompt["messages"])
            assert case["min_logit_margin"] >= mm.MIN_SAFE_MARGIN, case  # no near-tie to flip
            cases.append({"name": prompt["name"], **case})
    return cases


def genai_greedy(folder: Path, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(prompt ids, generated ids) of onnxruntime-genai's greedy loop on a model folder (the
    fixture builder's own loop)."""
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    _, ids, out, _ = make_models_module().genai_generate(og, model, og.Tokenizer(model), messages,
                                                         MAX_NEW_TOKENS)
    return ids, out


def write_gguf(checkpoint: Path, target: Path) -> Path:
    """The checkpoint's tensors as an fp32 GGUF file."""
    from safetensors.numpy import load_file

    tensors = {_gguf_name(name): t for name, t in load_file(str(checkpoint / "model.safetensors")).items()}
    return _write(target, tensors, quantize=False)


def write_quantized_gguf(target: Path) -> Path:
    """A small GGUF whose 2-D weights are Q8_0 (what most downloadable GGUFs look like)."""
    import numpy as np

    rng = np.random.default_rng(0)
    tensors = {"token_embd.weight": rng.standard_normal((64, 64)), "output_norm.weight": np.ones(64)}
    return _write(target, tensors, quantize=True)


def _write(target: Path, tensors: dict, quantize: bool) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(target), "phi3")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantize else gguf.LlamaFileType.ALL_F32)
    for name, tensor in tensors.items():
        tensor = np.asarray(tensor, dtype=np.float32)
        if quantize and tensor.ndim == 2:
            data = gguf.quants.quantize(tensor, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def _gguf_name(name: str) -> str:
    if name in _GGUF_TOP:
        return _GGUF_TOP[name]
    parts = name.split(".")  # model.layers.<i>.<module...>.weight
    return f"blk.{parts[2]}.{_GGUF_LAYER['.'.join(parts[3:-1])]}.{parts[-1]}"
