#!/usr/bin/env python
"""`agentic-onnx --help` against a bare `python -c "import typer, rich"` (issue 14's bound is
1.5x), interleaved in one sitting, medians. Runs by hand, not in CI.

    python benchmarks/help_startup.py [--rounds 12]

Four fresh processes per round: the bare import; Typer's help as it is without our changes
(`app(["--help"])`: no cache, markdown-it and pygments imported); a first `--help` (a new
terminal width each round, so never cached: the light import path); and a cached `--help`.
The help cache lives in a temporary AGENTIC_FLOW_HOME.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TYPER_AS_IS = ("from agentic_onnx.cli.app import app\n"
               "try:\n    app(['--help'], prog_name='agentic-onnx')\nexcept SystemExit:\n    pass\n")


def seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    rounds = parser.parse_args().rounds
    script = shutil.which("agentic-onnx") or sys.exit("install the package first (pip install -e .)")
    env = {**os.environ, "AGENTIC_FLOW_HOME": tempfile.mkdtemp(prefix="help-bench-")}
    subprocess.run([script, "--help"], stdout=subprocess.DEVNULL, env=env, check=True)
    times: dict[str, list[float]] = {"bare": [], "typer as is": [], "first --help": [],
                                     "cached --help": []}
    for index in range(rounds):
        times["bare"].append(seconds([sys.executable, "-c", "import typer, rich"], env))
        times["typer as is"].append(seconds([sys.executable, "-c", TYPER_AS_IS], env))
        times["first --help"].append(seconds([script, "--help"],
                                             {**env, "COLUMNS": str(100 + index)}))
        times["cached --help"].append(seconds([script, "--help"], env))
    bare = statistics.median(times["bare"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>14}: {median * 1000:6.0f} ms  {median / bare:5.2f}x bare")


if __name__ == "__main__":
    main()
