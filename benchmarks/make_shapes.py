#!/usr/bin/env python
"""Build random-weight int4 models of real shapes, offline, for the performance harness.

    python benchmarks/make_shapes.py                  # both shapes
    python benchmarks/make_shapes.py --shape fast --layers 8 --hidden 1024   # try a fast shape

Shapes (output under benchmarks/models/<name>/, git-ignored, never committed):
- `phi3-mini-shape`: Phi-3-mini-4k's decoder (hidden 3072, 32 layers, 32 heads, intermediate
  8192, vocab 32064, context 4096), int4 block 32, accuracy level 4: about 2.7 GB of ONNX data.
- `fast-shape`: the same architecture cut down (default 8 layers, hidden 1536, 16 heads of 96,
  intermediate 4096) so that it decodes near 100 tokens/s on a 2-core CPU (8 x 1024 ran ~190,
  8 x 2048 ~45 there), standing in for GPU-speed token rates.

Weights are transformers' random init in bf16; the genai builder quantizes them to int4 for the
CPU EP. Building the Phi-3-mini shape peaked at 22.6 GB RSS (the builder upcasts while
quantizing) and took ~4 minutes on 2 cores: run nothing heavy beside it.

The tokenizer is the tiny Phi-3 fixture's (353 ids, Phi-3's chat template). The model's vocab is 32064 as in Phi-3-mini; the LM-head rows
of every id the tokenizer cannot decode into clean text (ids >= 353, special tokens, partial
UTF-8 bytes) are zeroed, so greedy decoding emits only printable tokens and never EOS: every
generation runs to its length limit and every token produces visible text. The cost per token is
unchanged (the LM head is the same size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "benchmarks" / "models"
TOKENIZER_SOURCE = ROOT / "tests" / "fixtures" / "models" / "tiny-phi3-fp32"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
VOCAB_SIZE = 32064
CONTEXT = 4096

PHI3_MINI = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32)


def log(message: str) -> None:
    print(f"[make_shapes] {message}", flush=True)


def fast_shape(layers: int, hidden: int) -> dict:
    heads = max(1, hidden // 96) if hidden % 96 == 0 else max(1, hidden // 64)
    return dict(hidden_size=hidden, intermediate_size=int(hidden * 8 / 3) // 32 * 32,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads)


def clean_token_ids(tokenizer_json: Path) -> list[int]:
    """Ids that decode, on their own, to printable text (no special tokens, no partial UTF-8)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    special = {i for t, i in tokenizer.get_vocab(with_added_tokens=True).items()
               if t.startswith("<|")}
    clean = []
    for token_id in range(tokenizer.get_vocab_size()):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        if text and "\ufffd" not in text and all(ch.isprintable() or ch == "\n" for ch in text):
            clean.append(token_id)
    return clean


def random_model(model_class, config, seed: int, dtype):
    """transformers' random init of `model_class(config)`, every weight created in `dtype`
    (also benchmarks/llama_cpp_compare.py's LlamaForCausalLM twin of a shape)."""
    import torch

    torch.manual_seed(seed)
    torch.set_default_dtype(dtype)
    started = time.time()
    model = model_class(config).eval()
    log(f"  random init of {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params "
        f"took {time.time() - started:.0f}s")
    return model


def write_checkpoint(shape: dict, hf_dir: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    for name in TOKENIZER_FILES:
        shutil.copy2(TOKENIZER_SOURCE / name, hf_dir / name)
    config_path = hf_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text(encoding="utf-8"))
    tokenizer_config["model_max_length"] = CONTEXT
    config_path.write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    bos, eos = 0, [4, 0]  # the fixture tokenizer's <|endoftext|> and <|end|>
    config = Phi3Config(vocab_size=VOCAB_SIZE, max_position_embeddings=CONTEXT,
                        original_max_position_embeddings=CONTEXT, rms_norm_eps=1e-5,
                        bos_token_id=bos, eos_token_id=eos, pad_token_id=bos,
                        tie_word_embeddings=False, sliding_window=CONTEXT - 1,
                        dtype="bfloat16", **shape)
    model = random_model(Phi3ForCausalLM, config, seed, torch.bfloat16)
    keep = torch.tensor(clean_token_ids(hf_dir / "tokenizer.json"))
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        mask = torch.zeros(head.shape[0], dtype=torch.bool)
        mask[keep] = True
        head[~mask] = 0
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos,
                                               pad_token_id=bos, do_sample=False)
    model.save_pretrained(hf_dir, safe_serialization=True)
    del model


def export(hf_dir: Path, out_dir: Path, cache: Path, ep: str = "cpu", block_size: int = 32,
           accuracy_level: int = 4) -> None:
    """int4 block 32 accuracy level 4 for the CPU (the catalog's CPU variants; other values to
    measure them, benchmarks/cpu_knobs.py); fp16 for CUDA."""
    precision = ["-p", "int4", "--extra_options", f"block_size={block_size}",
                 f"accuracy_level={accuracy_level}"]
    if ep == "cuda":
        precision = ["-p", "fp16"]
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir),
               "-o", str(out_dir), "-e", ep, "-c", str(cache), *precision]
    log("running " + " ".join(command[1:]))
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"builder failed for {out_dir.name}")
    log(f"  builder took {time.time() - started:.0f}s")
    for leftover in out_dir.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover)
    shutil.copy2(hf_dir / "chat_template.jinja", out_dir / "chat_template.jinja")


def build(name: str, shape: dict, seed: int, ep: str = "cpu", **quantization: int) -> Path:
    out_dir = MODELS_DIR / name
    work = Path(tempfile.mkdtemp(prefix=f"agentic-onnx-{name}-", dir=MODELS_DIR))
    try:
        hf_dir, stage = work / "hf", work / "onnx"
        hf_dir.mkdir()
        log(f"{name}: {shape}")
        write_checkpoint(shape, hf_dir, seed)
        export(hf_dir, stage, work / "cache", ep, **quantization)
        (stage / "shape.json").write_text(json.dumps({"name": name, "vocab_size": VOCAB_SIZE,
                                                       "context_length": CONTEXT, **shape},
                                                      indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        stage.rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum(p.stat().st_size for p in out_dir.iterdir())
    log(f"{name}: {size / 1e9:.2f} GB in {out_dir}")
    return out_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("all", "phi3-mini", "fast"), default="all")
    parser.add_argument("--layers", type=int, default=8, help="fast shape: decoder layers")
    parser.add_argument("--hidden", type=int, default=1536, help="fast shape: hidden size")
    parser.add_argument("--name", help="output folder name (default: fast-shape / phi3-mini-shape)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--ep", choices=("cpu", "cuda"), default="cpu",
                        help="the variant to export (cuda: fp16, for a GPU machine)")
    parser.add_argument("--block-size", type=int, default=32, help="int4 block size (CPU)")
    parser.add_argument("--accuracy-level", type=int, default=4,
                        help="int4 MatMulNBits compute: 4 int8, 0 the default (fp32)")
    args = parser.parse_args()
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    quantization = {"block_size": args.block_size, "accuracy_level": args.accuracy_level}
    if args.shape in ("all", "fast"):
        build(args.name or "fast-shape", fast_shape(args.layers, args.hidden), args.seed, args.ep,
              **quantization)
    if args.shape in ("all", "phi3-mini"):
        build(args.name or "phi3-mini-shape", PHI3_MINI, args.seed, args.ep, **quantization)
    return 0


if __name__ == "__main__":
    sys.exit(main())
