#!/usr/bin/env python
"""Embedding throughput: agentic-onnx's engine (onnxruntime + tokenizers) against the same model
in PyTorch (transformers forward + the same mean pooling and normalisation, which is what
sentence-transformers runs), sentences per second at batch 1, 8 and 32, and peak memory.

Runs by hand, not in CI. Needs torch and transformers (dev only). The model is a random BERT
with all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12 heads, intermediate 1536, vocab
30522), exported once to ~/.cache/agentic-onnx-bench/minilm-shape/; the texts are
tests/fixtures/corpus.txt, tokenized with the fixture's WordPiece tokenizer (throughput depends
on the shape and the token counts, not on the weights). Each backend runs in its own process so
its peak RSS is its own.

    python benchmarks/embed_bench.py [--threads N] [--sentences 256] [--shape tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "models" / "tiny-bert-embed"
CACHE = Path.home() / ".cache" / "agentic-onnx-bench"
SHAPES = {"minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                         intermediate_size=1536, vocab_size=30522, max_position_embeddings=512),
          "tiny": None}  # tiny: the test fixture itself
BATCHES = (1, 8, 32)


def texts(count: int) -> list[str]:
    lines = [line.strip() for line in (ROOT / "tests/fixtures/corpus.txt").read_text().splitlines()
             if line.strip()]
    return [lines[i % len(lines)] for i in range(count)]


def build(shape: str) -> Path:
    """The model folder (sentence-transformers layout), built once."""
    if shape == "tiny":
        return FIXTURE
    folder = CACHE / f"{shape}-shape"
    if (folder / "onnx" / "model.onnx").is_file():
        return folder
    import torch
    from transformers import BertConfig, BertModel

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "modules.json", "sentence_bert_config.json"):
        shutil.copy(FIXTURE / name, folder / name)
    shutil.copytree(FIXTURE / "1_Pooling", folder / "1_Pooling")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    torch.manual_seed(0)
    config = BertConfig(**SHAPES[shape])
    model = BertModel(config, add_pooling_layer=False).eval()
    config.save_pretrained(folder)
    model.save_pretrained(folder / "torch")
    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    from make_embedding_model import export  # the fixture's exporter: one way to export

    export(model, folder)
    return folder


def run_onnx(folder: Path, sentences: list[str], threads: int) -> dict[str, float]:
    from agentic_onnx.core.embeddings.engine import load_embedding_model
    from agentic_onnx.core.embeddings.folder import open_embedding_folder

    model = load_embedding_model(open_embedding_folder(folder), "cpu", threads)
    return {str(b): rate(lambda chunk, b=b: model.embed(chunk, batch_size=b), sentences, b)
            for b in BATCHES}


def run_torch(folder: Path, sentences: list[str], threads: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F
    from transformers import BertModel, PreTrainedTokenizerFast

    torch.set_num_threads(threads)
    weights = folder / "torch" if (folder / "torch").is_dir() else None
    if weights is None:
        raise SystemExit("the tiny shape has no PyTorch weights; use --shape minilm")
    model = BertModel.from_pretrained(weights).eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), pad_token="[PAD]")

    def embed(chunk: list[str]) -> object:
        enc = tok(chunk, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)

    return {str(b): rate(lambda chunk, b=b: [embed(chunk[i:i + b]) for i in range(0, len(chunk), b)],
                         sentences, b) for b in BATCHES}


def rate(embed, sentences: list[str], batch: int, rounds: int = 3) -> float:  # noqa: ANN001
    """Median sentences/s over `rounds` passes (after one warm-up batch). At batch 1 the engine
    is called once per sentence, as a client embedding one text at a time would."""
    embed(sentences[:batch])
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        if batch == 1:
            for sentence in sentences:
                embed([sentence])
        else:
            embed(sentences)
        timings.append(time.perf_counter() - started)
    return len(sentences) / statistics.median(timings)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(backend: str, folder: Path, count: int, threads: int) -> None:
    sentences = texts(count)
    rates = (run_onnx if backend == "onnx" else run_torch)(folder, sentences, threads)
    peak_mb = peak_rss_mb()
    print(json.dumps({"backend": backend, "rates": rates, "peak_rss_mb": round(peak_mb)}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="minilm")
    parser.add_argument("--child", choices=("onnx", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = build(args.shape)
    if args.child:
        child(args.child, folder, args.sentences, args.threads)
        return 0
    results = []
    for backend in ("onnx", "torch"):
        out = subprocess.run([sys.executable, __file__, "--child", backend, "--shape", args.shape,
                              "--threads", str(args.threads), "--sentences", str(args.sentences)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{backend}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"shape {args.shape}, {args.sentences} sentences, {args.threads} threads")
    print("| backend | batch 1 | batch 8 | batch 32 | peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        cells = " | ".join(f"{r['rates'][str(b)]:,.1f}" for b in BATCHES)
        name = "agentic-onnx (onnxruntime)" if r["backend"] == "onnx" else "PyTorch (transformers)"
        print(f"| {name} | {cells} | {r['peak_rss_mb']} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
