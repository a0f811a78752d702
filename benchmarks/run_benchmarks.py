#!/usr/bin/env python
"""The performance harness (not a test): agentic-onnx against a bare genai loop, side by side.

    python benchmarks/make_shapes.py          # once: random-weight models of real shapes
    python benchmarks/run_benchmarks.py       # measures, writes docs/performance.md

Sections (every repetition is a fresh process; variants are interleaved, rotating their order,
so slow drift and other load hit every variant alike):
1. `run` piped, `run --json`, and `run` on a pseudo-terminal (live Rich rendering) against
   bare_loop.py `single` on the fast shape: decode rate and TTFT from each program's own report
   (`--verbose`/`--json` for ours), and timed from outside (first to last output byte).
2. `onnx benchmark --json` against bare_loop.py `bench` (same prompt ids, same counts).
3. Peak RSS (per child, from wait4) and load time with a warm OS file cache on the
   Phi-3-mini shape, `run` against the bare loop.
4. `agentic-onnx --help`: wall time and the modules it imports.
5. genai's default intra-op threads against physical cores, on the fast shape.
6. Per-token time outside genai's calls, in-process (overhead_probe.py): robust where 1-5 are
   noisy, because medians over tokens shrug off preemption by other processes.
Raw results go to benchmarks/results/latest.json; benchmarks/report.py then rewrites
docs/performance.md from them (keeping its hand-written Findings section).
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import selectors
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _repo_relative(path: Path) -> str:
    """Paths recorded in results name files by their place in the repo, not on this machine."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)

MODELS = ROOT / "benchmarks" / "models"
BARE = [sys.executable, str(ROOT / "benchmarks" / "bare_loop.py")]
CLI = [str(Path(sys.executable).with_name("agentic-onnx"))]
TASK = "Write a long story about a robot who learns to paint."
FORBIDDEN = ("onnxruntime_genai", "huggingface_hub", "pynvml")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def cpu_jiffies() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def busy_fraction(interval: float = 0.5) -> float:
    """Share of all CPUs busy over `interval` (everyone's work, ours included)."""
    idle0, total0 = cpu_jiffies()
    time.sleep(interval)
    idle1, total1 = cpu_jiffies()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(limit_s: float, threshold: float = 0.10) -> float:
    """Wait (up to limit_s) until the machine is nearly idle; returns the last busy share."""
    deadline = time.time() + limit_s
    busy = busy_fraction()
    while busy > threshold and time.time() < deadline:
        busy = busy_fraction()
    return busy


def child_env(terminal: bool) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AGENTIC_FLOW_HOME": HOME}
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    env["TERM"] = "xterm-256color" if terminal else "dumb"
    return env


def spawn(command: list[str], terminal: bool = False) -> dict:
    """Run `command`; time its first and last stdout bytes from outside; peak RSS via wait4;
    `others_share`: the share of the machine's CPU time that other processes used meanwhile."""
    idle0, total0 = cpu_jiffies()
    started = time.perf_counter()
    stamps: list[float] = []
    if terminal:
        master, slave = pty.openpty()
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                   env=child_env(True), close_fds=True)
        os.close(slave)
        out = _drain(master, stamps)
        err = ""
    else:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=child_env(False))
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))
        reader.start()
        out = _drain(process.stdout.fileno(), stamps)
        reader.join()
        err = b"".join(errors).decode("utf-8", "replace")
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.perf_counter()
    idle1, total1 = cpu_jiffies()
    tick = os.sysconf("SC_CLK_TCK")
    busy_s = ((total1 - total0) - (idle1 - idle0)) / tick
    capacity_s = (total1 - total0) / tick
    others = max(0.0, busy_s - usage.ru_utime - usage.ru_stime) / max(capacity_s, 1e-9)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command} exited {process.returncode}: {err[-2000:]}{out[-2000:]}")
    LAST_SPAWN["others_share"] = max(LAST_SPAWN.get("others_share", 0.0), others)
    return {"wall_s": ended - started, "rss_bytes": usage.ru_maxrss * 1024, "stdout": out,
            "others_share": round(others, 4), "cpu_s": usage.ru_utime + usage.ru_stime,
            "stderr": err, "first_byte_s": stamps[0] - started if stamps else None,
            "last_byte_s": stamps[-1] - started if stamps else None}


def _drain(fd: int, stamps: list[float]) -> str:
    chunks = []
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    while True:
        selector.select()
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the pty's other side closed
            data = b""
        if not data:
            break
        stamps.append(time.perf_counter())
        chunks.append(data)
    selector.close()
    if not isinstance(fd, int) or fd > 2:
        try:
            os.close(fd)
        except OSError:
            pass
    return b"".join(chunks).decode("utf-8", "replace")


def bare_report(result: dict) -> dict:
    line = next(l for l in result["stderr"].splitlines() if l.startswith("BARE_JSON "))
    return json.loads(line[len("BARE_JSON "):])


def verbose_stats(text: str) -> dict:
    """Parse render.verbose_stats (Ollama-style lines) from stderr or a pty transcript."""
    clean = ANSI.sub("", text)

    def seconds(name: str) -> float:
        value = re.search(rf"^{name}:\s+([\d.]+)(ms|s)\s*$", clean, re.M)
        return float(value.group(1)) / (1000 if value.group(2) == "ms" else 1)

    rate = re.search(r"^eval rate:\s+([\d.]+) tokens/s", clean, re.M)
    count = re.search(r"^eval count:\s+(\d+)", clean, re.M)
    return {"ttft_ms": seconds("prompt eval duration") * 1000, "load_s": seconds("load duration"),
            "decode_tokens_per_s": float(rate.group(1)), "completion_tokens": int(count.group(1))}


def external_rate(result: dict, tokens: int) -> float | None:
    span = (result["last_byte_s"] or 0) - (result["first_byte_s"] or 0)
    return (tokens - 1) / span if span > 0 else None


def section_run_vs_bare(model: Path, threads: int, reps: int, max_tokens: int) -> dict:
    """Variant -> list of {ttft_ms, decode_tokens_per_s, external_*} per repetition."""
    common = ["--model", str(model), "--task", TASK, "--max-tokens", str(max_tokens)]
    variants = {
        "bare loop": lambda: _bare_single(model, threads, max_tokens),
        "run (piped)": lambda: _cli_verbose(spawn([*CLI, "run", *common, "--verbose"]), max_tokens),
        "run --json": lambda: _cli_json(spawn([*CLI, "run", *common, "--json"])),
        "run (pty, live)": lambda: _cli_verbose(spawn([*CLI, "run", *common, "--verbose"],
                                                      terminal=True), max_tokens, pty_mode=True),
    }
    return _interleave(variants, reps)


def _bare_single(model: Path, threads: int, max_tokens: int) -> dict:
    result = spawn([*BARE, "single", str(model), "--threads", str(threads), "--task", TASK,
                    "--max-tokens", str(max_tokens)])
    report = bare_report(result)
    return {"ttft_ms": report["ttft_ms"], "decode_tokens_per_s": report["decode_tokens_per_s"],
            "load_s": report["load_s"], "external_decode_tps": external_rate(result, max_tokens),
            "first_byte_s": result["first_byte_s"], "wall_s": result["wall_s"],
            "rss_bytes": result["rss_bytes"]}


def _cli_verbose(result: dict, max_tokens: int, pty_mode: bool = False) -> dict:
    stats = verbose_stats(result["stdout"] if pty_mode else result["stderr"])
    return {**stats, "external_decode_tps": external_rate(result, stats["completion_tokens"]),
            "first_byte_s": result["first_byte_s"], "wall_s": result["wall_s"],
            "rss_bytes": result["rss_bytes"]}


def _cli_json(result: dict) -> dict:
    report = json.loads(result["stdout"])
    timings = report["timings"]
    return {"ttft_ms": timings["ttft_ms"], "decode_tokens_per_s": timings["decode_tokens_per_s"],
            "load_s": timings["load_s"], "wall_s": result["wall_s"],
            "rss_bytes": result["rss_bytes"]}


def _interleave(variants: dict, reps: int) -> dict:
    results: dict[str, list[dict]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            busy = wait_for_quiet(QUIET_WAIT)
            LAST_SPAWN.clear()
            sample = variants[name]()
            sample["busy_before"] = round(busy, 3)
            sample["others_share"] = round(LAST_SPAWN.get("others_share", 0.0), 4)
            results[name].append(sample)
        log(f"rep {rep + 1}/{reps}: " + ", ".join(
            f"{n} {_fmt(results[n][-1].get('decode_tokens_per_s'))} t/s" for n in names))
    return results


def section_benchmark_vs_bare(model: Path, threads: int, reps: int) -> dict:
    prompt, gen, iterations = 64, 128, 5
    def ours() -> dict:
        result = spawn([*CLI, "onnx", "benchmark", "--model", str(model), "-e", "cpu", "--json",
                        "--prompt-tokens", str(prompt), "--gen-tokens", str(gen),
                        "--iterations", str(iterations), "--warmup", "1", "--threads", str(threads)])
        test = json.loads(result["stdout"])["runs"][0]["tests"][0]
        return {"ttft_ms": test["ttft_ms"]["p50"], "decode_tokens_per_s": test["gen_tps"]["p50"],
                "ttft_ms_mean": test["ttft_ms"]["mean"], "gen_tps_mean": test["gen_tps"]["mean"]}

    def bare() -> dict:
        result = spawn([*BARE, "bench", str(model), "--threads", str(threads), "--prompt-tokens",
                        str(prompt), "--gen-tokens", str(gen), "-n", str(iterations), "--warmup", "1"])
        runs = bare_report(result)["iterations"]
        return {"ttft_ms": statistics.median(r["ttft_ms"] for r in runs),
                "decode_tokens_per_s": statistics.median(r["decode_tokens_per_s"] for r in runs),
                "ttft_ms_mean": statistics.fmean(r["ttft_ms"] for r in runs),
                "gen_tps_mean": statistics.fmean(r["decode_tokens_per_s"] for r in runs)}

    return _interleave({"bare loop (bench)": bare, "onnx benchmark": ours}, reps)


def section_memory_and_load(model: Path, threads: int, reps: int) -> dict:
    spawn([*BARE, "single", str(model), "--threads", str(threads), "--max-tokens", "2"])  # warm the file cache
    common = ["--model", str(model), "--task", TASK, "--max-tokens", "8"]
    variants = {
        "bare loop": lambda: _bare_single(model, threads, 8),
        "run --json": lambda: _cli_json(spawn([*CLI, "run", *common, "--json"])),
    }
    return _interleave(variants, reps)


def section_help(reps: int) -> dict:
    walls = [spawn([*CLI, "--help"])["wall_s"] for _ in range(reps)]
    probe = ("import sys\nfrom agentic_onnx.cli.main import main\nsys.argv=['agentic-onnx','--help']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n")
    modules = spawn([sys.executable, "-c", probe])["stderr"].split("MODULES ", 1)[1].split()
    heavy = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    ours = [m for m in modules if m.startswith("agentic_onnx")]
    top = sorted({m.split(".")[0] for m in modules})
    return {"wall_s": walls, "module_count": len(modules), "forbidden_imported": heavy,
            "agentic_onnx_modules": ours, "top_level_packages": top}


def section_threads(model: Path, physical: int, reps: int) -> dict:
    def bare(threads: int):
        def measure() -> dict:
            result = spawn([*BARE, "bench", str(model), "--threads", str(threads), "--prompt-tokens",
                            "64", "--gen-tokens", "128", "-n", "3", "--warmup", "1"])
            runs = bare_report(result)["iterations"]
            return {"ttft_ms": statistics.fmean(r["ttft_ms"] for r in runs),
                    "decode_tokens_per_s": statistics.fmean(r["decode_tokens_per_s"] for r in runs)}
        return measure
    return _interleave({"genai default threads": bare(0),
                        f"intra_op_num_threads={physical}": bare(physical)}, reps)


def section_overhead(model: Path, threads: int, reps: int, max_tokens: int) -> dict:
    """Per-token time outside genai's calls, in-process (benchmarks/overhead_probe.py)."""
    def probe(mode: str):
        def measure() -> dict:
            result = spawn([sys.executable, str(ROOT / "benchmarks" / "overhead_probe.py"),
                            str(model), mode, "--max-tokens", str(max_tokens),
                            "--threads", str(threads)])
            line = next(l for l in result["stderr"].splitlines() if l.startswith("PROBE_JSON "))
            report = json.loads(line[len("PROBE_JSON "):])
            report["decode_tokens_per_s"] = report["decode_tps_from_parts"]
            return report
        return measure
    return _interleave({"bare loop": probe("bare"), "engine + Response + PlainStream": probe("piped"),
                        "engine + Response + LiveMarkdownStream": probe("live"),
                        "agentic-onnx run, whole CLI (piped)": probe("cli")}, reps)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def machine() -> dict:
    sys.path.insert(0, str(ROOT))
    from agentic_onnx.core.bench.runs import machine_description

    return machine_description()


def main() -> int:
    global HOME, QUIET_WAIT
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7, help="repetitions of sections 1, 2 and 5")
    parser.add_argument("--big-reps", type=int, default=3, help="repetitions on the Phi-3-mini shape")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="seconds to wait for an idle machine before each measurement")
    parser.add_argument("--sections", default="1,2,3,4,5,6")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other sections already in --out (re-measure only --sections)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    args = parser.parse_args()
    QUIET_WAIT = args.quiet_wait
    HOME = tempfile.mkdtemp(prefix="agentic-bench-home-")
    import psutil

    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    fast, big = MODELS / "fast-shape", MODELS / "phi3-mini-shape"
    sections = set(args.sections.split(","))
    previous = (json.loads(args.out.read_text(encoding="utf-8"))
                if args.merge and args.out.exists() else {})
    results: dict = {**previous, "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "threads": physical, "settings": vars(args) | {"out": _repo_relative(args.out)},
                     "load_before": os.getloadavg()}
    steps = [("1", "run_vs_bare", lambda: section_run_vs_bare(fast, physical, args.reps, args.max_tokens)),
             ("2", "benchmark_vs_bare", lambda: section_benchmark_vs_bare(fast, physical, args.reps)),
             ("3", "phi3_memory_load", lambda: section_memory_and_load(big, physical, args.big_reps)),
             ("4", "help", lambda: section_help(10)),
             ("5", "threads_default_vs_physical", lambda: section_threads(fast, physical, args.reps)),
             ("6", "overhead", lambda: section_overhead(fast, physical, args.reps, args.max_tokens))]
    for key, name, step in steps:
        if key in sections:
            log(f"section {key}: {name}")
            started = time.time()
            results[name] = step()
            results[name + "_seconds"] = round(time.time() - started, 1)
    results["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {args.out}")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), str(args.out)], check=True)
    return 0


HOME = ""
QUIET_WAIT = 20.0
LAST_SPAWN: dict[str, float] = {}

if __name__ == "__main__":
    sys.exit(main())
