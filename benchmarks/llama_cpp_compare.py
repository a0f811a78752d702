#!/usr/bin/env python
"""onnxruntime-genai against llama.cpp on one random model shape, side by side (by hand, not CI).

    python benchmarks/make_shapes.py --shape fast             # once: the ONNX side (int4, CPU)
    python benchmarks/llama_cpp_compare.py --shape fast       # build, convert, bench
    python benchmarks/llama_cpp_compare.py --shape fast --steps bench --reps 6   # again
    python benchmarks/llama_cpp_compare.py                    # the Phi-3-mini shape (default)

The Phi-3-mini shape needs its ONNX model (make_shapes.py), about 16 GB of free disk while
converting (the fp16 checkpoint and the f16 GGUF, 7.6 GB each; 2.2 GB stay) and ~10 GB of
memory, and it keeps both cores busy for tens of minutes: run it alone, by hand.

Steps (`--steps build,convert,bench`, all by default; each skips what is already done):

- `build`: `pip download llama-cpp-python --no-binary llama-cpp-python --no-deps` (the source
  distribution; `--llama-cpp-python 0.3.36` pins it) into benchmarks/.cache/llama_cpp/
  (git-ignored), unpacked, and its vendored llama.cpp (`vendor/llama.cpp`) built with cmake,
  Release, `-DGGML_NATIVE=ON`, static, only the `llama-bench` and `llama-quantize` targets, under
  `nice -n 10`. 14 minutes on 2 cores (the sdist 76 MB); skipped when both binaries exist.
- `convert`: the llama.cpp twin of the ONNX shape: a random-weight `LlamaForCausalLM` with the
  ONNX model's hidden size, layers, heads, kv heads, intermediate size and vocab (its shape.json,
  written by make_shapes.py), initialised by make_shapes.random_model in fp16 and saved as
  safetensors; the vendored `convert_hf_to_gguf.py --outtype f16`; `llama-quantize ... Q4_0`.
  The HF checkpoint and the f16 GGUF are deleted once used (7.6 GB each for Phi-3-mini); only
  benchmarks/.cache/llama_cpp/models/<shape>/model-Q4_0.gguf stays. Phi-3 fuses qkv and
  gate/up into one matrix each; llama keeps them apart with the same sizes, so both models
  multiply the same matrices per token. Their formats differ a little (genai's int4 block 32
  with an fp32 scale is 5.0 bits per weight, Q4_0 4.5; llama-quantize keeps output.weight at
  Q6_K and genai its embedding table at fp32), so each side gets its own ceiling. The tokenizer is a generated Llama-style BPE of exactly `vocab`
  tokens (the converter needs one, llama.cpp sizes its logits by it; llama-bench feeds random
  ids, so its contents do not matter).
- `bench`: `--reps` repetitions (default 4), interleaved, the order alternating, each after
  waiting (up to `--quiet-wait` s) for idle CPUs: (a) `bare_loop.py bench` on the ONNX model,
  a fresh process, threads = physical cores, 64-token prompt, 128 generated tokens, 1 + 2
  generations: the first generation of the process and the warmed ones reported apart, as
  bare_loop.py's TTFT and decode rate (prefill tok/s = prompt tokens / TTFT); (b)
  `llama-bench -m model-Q4_0.gguf -t <threads> -p 64 -n 128 -r 1 -o json` (pp64 and tg128;
  llama-bench runs its own unmeasured warm-up first, so it is a warmed number; its tg128 starts
  from an empty context, ours after the 64-token prompt: a few percent of attention at most).

The report: a Markdown table per program (prefill and decode tok/s, median and range over the
repetitions; the weight bytes one decoded token reads, from the files: every tensor except the
embedding table, of which one row; the decode ceiling = those bytes / the measured read
bandwidth (agentic_onnx.core.machine.bandwidth, best of a probe before every repetition); the
share of it reached), the paired ratios ours / llama.cpp, and one `RESULT_JSON {...}` line
(`--out FILE` also writes it). Run nothing else heavy meanwhile.
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
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(1, str(ROOT))

import make_shapes  # noqa: E402  (benchmarks/: the random-model code and the shapes)
import run_benchmarks  # noqa: E402  (benchmarks/: spawn, idle wait, bare_loop's report)

CACHE = ROOT / "benchmarks" / ".cache" / "llama_cpp"
BUILD = CACHE / "build"
BINARIES = ("llama-bench", "llama-quantize")
SHAPES = {"fast": "fast-shape", "phi3-mini": "phi3-mini-shape"}
PROMPT_TOKENS, GEN_TOKENS, WARM_GENERATIONS = 64, 128, 2
NICE = ["nice", "-n", "10"]


def log(message: str) -> None:
    print(f"[llama_cpp_compare] {message}", file=sys.stderr, flush=True)


def run(command: list, **kwargs) -> None:
    log("$ " + " ".join(str(c) for c in command))
    subprocess.run([str(c) for c in command], check=True, **kwargs)


# ---- build ------------------------------------------------------------------------------------

def source_dir(version: str | None) -> Path:
    """The unpacked sdist (downloaded once); its vendor/llama.cpp is what we build."""
    sdists = CACHE / "sdist"
    pattern = f"llama_cpp_python-{version or '*'}.tar.gz"
    found = sorted(sdists.glob(pattern))
    if not found:
        spec = f"llama-cpp-python=={version}" if version else "llama-cpp-python"
        run([sys.executable, "-m", "pip", "download", spec, "--no-binary", "llama-cpp-python",
             "--no-deps", "--dest", sdists])
        found = sorted(sdists.glob(pattern))
    archive = found[-1]
    target = CACHE / "src" / archive.name.removesuffix(".tar.gz")
    if not (target / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        log(f"unpacking {archive.name}")
        with tarfile.open(archive) as tar:
            tar.extractall(CACHE / "src", filter="data")
    return target


def llama_cpp_dir() -> Path:
    marker = CACHE / "source.txt"
    if not marker.is_file():
        raise SystemExit("no llama.cpp source yet: run with --steps build first")
    return Path(marker.read_text(encoding="utf-8").strip())


def binary(name: str) -> Path:
    return BUILD / "bin" / name


def step_build(version: str | None, jobs: int) -> dict:
    source = source_dir(version) / "vendor" / "llama.cpp"
    (CACHE / "source.txt").write_text(str(source) + "\n", encoding="utf-8")
    if all(binary(name).is_file() for name in BINARIES):
        log(f"build: {BUILD / 'bin'} has {', '.join(BINARIES)}; skipped")
        return {"skipped": True}
    cmake = shutil.which("cmake")
    if cmake is None:
        raise SystemExit("cmake not found: pip install cmake (or apt-get install cmake)")
    started = time.time()
    run([*NICE, cmake, "-S", source, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
         "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
         "-DBUILD_SHARED_LIBS=OFF"])
    configured = time.time()
    run([*NICE, cmake, "--build", BUILD, "--config", "Release", "-j", str(jobs),
         "--target", *BINARIES])
    seconds = {"configure_s": round(configured - started, 1),
               "compile_s": round(time.time() - configured, 1)}
    log(f"build: {seconds}")
    return seconds


# ---- convert ----------------------------------------------------------------------------------

def onnx_dir(shape: str) -> Path:
    path = make_shapes.MODELS_DIR / SHAPES[shape]
    if not (path / "genai_config.json").is_file():
        raise SystemExit(f"no ONNX model at {path}: python benchmarks/make_shapes.py --shape {shape}")
    return path


def read_shape(shape: str) -> dict:
    """The ONNX model's shape: shape.json (make_shapes.py), checked against genai_config.json."""
    model = onnx_dir(shape)
    data = json.loads((model / "shape.json").read_text(encoding="utf-8"))
    decoder = json.loads((model / "genai_config.json").read_text(encoding="utf-8"))["model"]
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    mismatched = [k for k in keys if decoder["decoder"][k] != data[k]]
    if mismatched or decoder["vocab_size"] != data["vocab_size"]:
        raise SystemExit(f"{model}: shape.json and genai_config.json disagree on {mismatched}")
    return {k: data[k] for k in ("vocab_size", "context_length", "hidden_size",
                                 "intermediate_size", "num_hidden_layers",
                                 "num_attention_heads", "num_key_value_heads")}


def gguf_path(shape: str, kind: str = "Q4_0") -> Path:
    return CACHE / "models" / SHAPES[shape] / f"model-{kind}.gguf"


def converter_path(source: Path) -> str:
    """PYTHONPATH for convert_hf_to_gguf.py: the vendored gguf-py, and sentencepiece (which the
    converter imports before it looks for a tokenizer.model) installed under the cache when
    this Python lacks it, so the environment itself is left alone."""
    paths = [str(source / "gguf-py")]
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        target = CACHE / "pydeps"
        if not (target / "sentencepiece").is_dir():
            run([sys.executable, "-m", "pip", "install", "--target", target,
                 "sentencepiece>=0.1.98,<0.3.0"])  # llama.cpp's requirements-convert pin
        paths.append(str(target))
    return os.pathsep.join(filter(None, [*paths, os.environ.get("PYTHONPATH")]))


def write_llama_tokenizer(vocab_size: int, out: Path) -> None:
    """A Llama-2-style tokenizer.json (BPE, byte fallback, "▁" for spaces) of exactly
    `vocab_size` ids: <unk> <s> </s>, the 256 byte tokens, then printable filler pieces. The
    converter reads it as a Llama HF vocab; no tokenizer.model needed."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    pieces = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), "▁"]
    pieces += [chr(c) for c in range(33, 127)]
    pieces += [f"▁t{i}" for i in range(vocab_size - len(pieces))]
    tokenizer = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=[],
                                     unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                                 normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                           decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens(pieces[:3])
    tokenizer.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
              "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
              "add_eos_token": False, "model_max_length": make_shapes.CONTEXT}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def write_llama_checkpoint(shape: dict, hf_dir: Path, seed: int) -> None:
    """The shape as a random LlamaForCausalLM in fp16 safetensors (2 GB shards bound what
    saving adds to the model's own memory)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                         intermediate_size=shape["intermediate_size"],
                         num_hidden_layers=shape["num_hidden_layers"],
                         num_attention_heads=shape["num_attention_heads"],
                         num_key_value_heads=shape["num_key_value_heads"],
                         max_position_embeddings=shape["context_length"], rms_norm_eps=1e-5,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                         dtype="float16")
    model = make_shapes.random_model(LlamaForCausalLM, config, seed, torch.float16)
    model.save_pretrained(hf_dir, safe_serialization=True, max_shard_size="2GB")
    del model
    write_llama_tokenizer(shape["vocab_size"], hf_dir)


def peak_rss_gb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss * 1024 / 1e9, 2)  # Linux: KiB


def step_convert(shape_name: str, seed: int, force: bool) -> dict:
    final = gguf_path(shape_name)
    if final.is_file() and not force:
        log(f"convert: {final} exists; skipped (--force-convert redoes it)")
        return {"skipped": True}
    shape = read_shape(shape_name)
    source = llama_cpp_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    f16 = gguf_path(shape_name, "f16")
    hf_dir = Path(tempfile.mkdtemp(prefix="hf-llama-", dir=final.parent))
    timings: dict[str, float] = {}
    try:
        started = time.time()
        log(f"convert: random LlamaForCausalLM {shape}")
        write_llama_checkpoint(shape, hf_dir, seed)
        timings["hf_checkpoint_s"] = round(time.time() - started, 1)
        timings["hf_checkpoint_peak_rss_gb"] = peak_rss_gb(resource.RUSAGE_SELF)
        started = time.time()
        env = {**os.environ, "PYTHONPATH": converter_path(source), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1"}
        run([*NICE, sys.executable, source / "convert_hf_to_gguf.py", hf_dir,
             "--outtype", "f16", "--outfile", f16], env=env)
        timings["gguf_f16_s"] = round(time.time() - started, 1)
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)
    started = time.time()
    partial = final.with_suffix(".gguf.part")
    try:
        run([*NICE, binary("llama-quantize"), f16, partial, "Q4_0", str(os.cpu_count() or 1)])
        partial.rename(final)
    finally:
        f16.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    timings["quantize_s"] = round(time.time() - started, 1)
    timings["converter_quantize_peak_rss_gb"] = peak_rss_gb(resource.RUSAGE_CHILDREN)
    log(f"convert: {final} ({final.stat().st_size / 1e9:.3f} GB) {timings}")
    return timings


# ---- bytes per token --------------------------------------------------------------------------

def onnx_bytes_per_token(model_dir: Path) -> dict:
    """Every initializer's stored bytes, except the embedding table (Gather's data input), of
    which a decoded token reads one row."""
    import onnx

    graph = onnx.load(str(model_dir / "model.onnx"), load_external_data=False).graph
    gathered = {node.input[0] for node in graph.node if node.op_type == "Gather"}
    total = embedding = rows = 0
    for tensor in graph.initializer:
        lengths = [int(e.value) for e in tensor.external_data if e.key == "length"]
        size = lengths[0] if lengths else len(tensor.raw_data)
        total += size
        if tensor.name in gathered and len(tensor.dims) == 2:
            embedding, rows = embedding + size, tensor.dims[0]
    return {"weights_bytes": total, "embedding_bytes": embedding,
            "bytes_per_token": total - embedding + (embedding // rows if rows else 0)}


def gguf_bytes_per_token(path: Path, source: Path) -> dict:
    """The same for the GGUF file (token_embd.weight is the embedding table)."""
    sys.path.insert(0, str(source / "gguf-py"))
    from gguf import GGUFReader

    tensors = GGUFReader(str(path)).tensors
    total = sum(int(t.n_bytes) for t in tensors)
    table = next(t for t in tensors if t.name == "token_embd.weight")
    rows = int(table.shape[-1])  # GGUF lists dimensions innermost first: (hidden, vocab)
    types = {f"{t.name.split('.', 2)[-1] if t.name.startswith('blk.') else t.name}: "
             f"{t.tensor_type.name}" for t in tensors if len(t.shape) > 1}
    return {"weights_bytes": total, "embedding_bytes": int(table.n_bytes),
            "bytes_per_token": total - int(table.n_bytes) + int(table.n_bytes) // rows,
            "tensor_types": sorted(types)}


# ---- bench ------------------------------------------------------------------------------------

def ours(model: Path, threads: int) -> dict:
    result = run_benchmarks.spawn([*run_benchmarks.BARE, "bench", str(model), "--threads",
                                   str(threads), "--prompt-tokens", str(PROMPT_TOKENS),
                                   "--gen-tokens", str(GEN_TOKENS), "--warmup", "0",
                                   "-n", str(1 + WARM_GENERATIONS)])
    runs = run_benchmarks.bare_report(result)["iterations"]

    def rates(items: list[dict]) -> dict:
        return {"prefill_tps": statistics.median(PROMPT_TOKENS / (r["ttft_ms"] / 1000.0)
                                                 for r in items),
                "decode_tps": statistics.median(r["decode_tokens_per_s"] for r in items),
                "ttft_ms": statistics.median(r["ttft_ms"] for r in items)}

    return {"first": rates(runs[:1]), "warm": rates(runs[1:]), "iterations": runs,
            "others_share": result["others_share"]}


def llama(gguf: Path, threads: int) -> dict:
    result = run_benchmarks.spawn([binary("llama-bench"), "-m", str(gguf),
                                   "-t", str(threads), "-p", str(PROMPT_TOKENS),
                                   "-n", str(GEN_TOKENS), "-r", "1", "-o", "json"])
    rows = json.loads(result["stdout"])
    prefill = next(r for r in rows if r["n_prompt"] == PROMPT_TOKENS and r["n_gen"] == 0)
    decode = next(r for r in rows if r["n_gen"] == GEN_TOKENS and r["n_prompt"] == 0)
    return {"prefill_tps": prefill["avg_ts"], "decode_tps": decode["avg_ts"],
            "build": {k: prefill.get(k) for k in ("build_commit", "build_number", "cpu_info",
                                                   "backends", "model_type", "model_size",
                                                   "model_n_params", "type_k")},
            "others_share": result["others_share"]}


def step_bench(shape_name: str, reps: int, quiet_wait: float) -> dict:
    from agentic_onnx.core.machine.bandwidth import measure_read_bandwidth
    from agentic_onnx.core.machine.hardware import default_threads

    model, gguf = onnx_dir(shape_name), gguf_path(shape_name)
    if not gguf.is_file() or not binary("llama-bench").is_file():
        raise SystemExit("no llama.cpp side yet: run with --steps build,convert first")
    threads = default_threads()
    run_benchmarks.HOME = tempfile.mkdtemp(prefix="agentic-bench-home-")
    results: dict = {"shape": shape_name, "shape_dims": read_shape(shape_name),
                     "threads": threads, "reps": reps, "prompt_tokens": PROMPT_TOKENS,
                     "gen_tokens": GEN_TOKENS, "machine": run_benchmarks.machine(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "llama_cpp_source": llama_cpp_dir().parent.parent.name,
                     "load_before": os.getloadavg(), "bandwidth_gbps": [],
                     "onnx": onnx_bytes_per_token(model),
                     "gguf": gguf_bytes_per_token(gguf, llama_cpp_dir()),
                     "ours": [], "llama_cpp": []}
    programs = [("ours", lambda: ours(model, threads)), ("llama_cpp", lambda: llama(gguf, threads))]
    for rep in range(reps):
        results["bandwidth_gbps"].append(round(measure_read_bandwidth(threads) or 0.0, 2))
        for name, measure in programs if rep % 2 == 0 else programs[::-1]:
            busy = run_benchmarks.wait_for_quiet(quiet_wait)
            sample = measure()
            sample["busy_before"] = round(busy, 3)
            results[name].append(sample)
        o, l = results["ours"][-1], results["llama_cpp"][-1]
        log(f"rep {rep + 1}/{reps}: ours pp {o['warm']['prefill_tps']:.1f} tg "
            f"{o['warm']['decode_tps']:.1f} (first generation tg {o['first']['decode_tps']:.1f});"
            f" llama.cpp pp {l['prefill_tps']:.1f} tg {l['decode_tps']:.1f} t/s")
    results["load_after"] = os.getloadavg()
    return results


# ---- report -----------------------------------------------------------------------------------

def med_range(values: list[float], digits: int = 1) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def summarize(results: dict) -> dict:
    bandwidth = max(results["bandwidth_gbps"]) * 1e9
    rows = {
        "onnxruntime-genai, warmed (bare_loop.py)": ([r["warm"] for r in results["ours"]], "onnx"),
        "onnxruntime-genai, first generation of a process":
            ([r["first"] for r in results["ours"]], "onnx"),
        "llama.cpp Q4_0 (llama-bench)": (results["llama_cpp"], "gguf"),
    }
    summary: dict = {"bandwidth_gbps_best": round(bandwidth / 1e9, 2), "programs": {}}
    for label, (samples, side) in rows.items():
        per_token = results[side]["bytes_per_token"]
        ceiling = bandwidth / per_token
        decode = [s["decode_tps"] for s in samples]
        summary["programs"][label] = {
            "prefill_tps": [round(s["prefill_tps"], 2) for s in samples],
            "decode_tps": [round(v, 2) for v in decode],
            "bytes_per_token": per_token, "ceiling_tps": round(ceiling, 2),
            "share_of_ceiling": round(statistics.median(decode) / ceiling, 3)}
    for key in ("prefill_tps", "decode_tps"):
        summary[f"ratio_{key}"] = {
            which: [round(o[which][key] / l[key], 3)
                    for o, l in zip(results["ours"], results["llama_cpp"])]
            for which in ("warm", "first")}
    return summary


def markdown(results: dict, summary: dict) -> str:
    dims = results["shape_dims"]
    machine = results["machine"]
    lines = [f"Shape `{results['shape']}`: {dims['num_hidden_layers']} layers, hidden "
             f"{dims['hidden_size']}, {dims['num_attention_heads']} heads "
             f"({dims['num_key_value_heads']} kv), intermediate {dims['intermediate_size']}, vocab "
             f"{dims['vocab_size']}; {results['threads']} threads; pp{results['prompt_tokens']} + "
             f"tg{results['gen_tokens']}; {results['reps']} interleaved repetitions; read "
             f"bandwidth {summary['bandwidth_gbps_best']} GB/s (best of "
             f"{results['bandwidth_gbps']}); {machine['cpu']}, SIMD {', '.join(machine['simd'])}; "
             f"onnxruntime-genai {machine['onnxruntime_genai']}, llama.cpp "
             f"{results['llama_cpp'][0]['build']['build_commit']} (vendored in "
             f"{results['llama_cpp_source']}).", "",
             "| program | prefill tok/s, median (range) | decode tok/s, median (range) "
             "| weight MB read per token | decode ceiling tok/s | decode / ceiling |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, row in summary["programs"].items():
        lines.append(f"| {label} | {med_range(row['prefill_tps'])} | {med_range(row['decode_tps'])}"
                     f" | {row['bytes_per_token'] / 1e6:.1f} | {row['ceiling_tps']:.1f} "
                     f"| {row['share_of_ceiling']:.2f} |")
    lines += ["", "Ours / llama.cpp, paired per repetition, median (range): "
              f"decode {med_range(summary['ratio_decode_tps']['warm'], 3)} warmed, "
              f"{med_range(summary['ratio_decode_tps']['first'], 3)} first generation; "
              f"prefill {med_range(summary['ratio_prefill_tps']['warm'], 3)} warmed, "
              f"{med_range(summary['ratio_prefill_tps']['first'], 3)} first generation.",
              "", "GGUF tensor types: " + ", ".join(results["gguf"]["tensor_types"]) + "."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=tuple(SHAPES), default="phi3-mini")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--steps", default="build,convert,bench")
    parser.add_argument("--llama-cpp-python", dest="version",
                        help="sdist version to build (default: the newest on the index)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="cmake -j")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--force-convert", action="store_true")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="seconds to wait for idle CPUs before each measurement")
    parser.add_argument("--out", type=Path, help="also write the results JSON here")
    args = parser.parse_args()
    steps = set(args.steps.split(","))
    if unknown := steps - {"build", "convert", "bench"}:
        parser.error(f"unknown steps: {sorted(unknown)}")
    record: dict = {}
    if "build" in steps:
        record["build"] = step_build(args.version, args.jobs)
    if "convert" in steps:
        record["convert"] = step_convert(args.shape, args.seed, args.force_convert)
    if "bench" in steps:
        results = step_bench(args.shape, args.reps, args.quiet_wait)
        summary = summarize(results)
        print(markdown(results, summary))
        record.update(results=results, summary=summary)
    text = json.dumps(record)
    print("RESULT_JSON " + text, flush=True)
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
