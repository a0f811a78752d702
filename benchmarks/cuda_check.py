"""Check the CUDA path for real on a machine with an NVIDIA GPU and the CUDA genai build.

Usage (after `pip install onnxruntime-genai-cuda onnxruntime-gpu`):
    python benchmarks/cuda_check.py            # prints one JSON report, exit 1 on a failed check
It uses the committed tiny fixtures, so it needs no download.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
sys.path.insert(0, str(ROOT))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentic_onnx", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})}, cwd=ROOT)


def cuda_variant_copy(workdir: Path) -> Path:
    """The fp32 fixture re-labelled as a CUDA variant (provider_options: cuda)."""
    target = workdir / "tiny-phi3-cuda"
    shutil.copytree(MODELS / "tiny-phi3-fp32", target)
    config = json.loads((target / "genai_config.json").read_text())
    config["model"]["decoder"].setdefault("session_options", {})["provider_options"] = [{"cuda": {}}]
    (target / "genai_config.json").write_text(json.dumps(config, indent=2))
    return target


def parity_on_cuda() -> list[dict]:
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.model_folder import open_model_folder
    from agentic_onnx.core.generation.options import build_options

    expected = json.loads((MODELS / "expected.json").read_text())
    rows = []
    for name, model in expected["models"].items():
        engine = load_model(open_model_folder(MODELS / name), "cuda", threads=None)
        for case in model["cases"]:
            tokens = list(engine.generate_tokens(engine.encode(engine.render_prompt(case["messages"])),
                                                 build_options(max_tokens=expected["max_new_tokens"])))
            rows.append({"model": name, "case": case["name"], "ep": engine.execution_provider,
                         "equal": tokens == case["generated_ids"],
                         "first_diff": next((i for i, (a, b) in enumerate(zip(tokens, case["generated_ids"])) if a != b), None)})
    return rows


def main() -> int:
    os.environ["AGENTIC_FLOW_HOME"] = tempfile.mkdtemp(prefix="agentic-cuda-check-")  # not ~
    report: dict = {}
    info = cli("onnx", "info", "--json")
    data = json.loads(info.stdout) if info.returncode == 0 else {}
    report["info"] = {"rc": info.returncode, "gpus": data.get("gpus"),
                      "execution_providers": data.get("execution_providers"),
                      "genai_build": data.get("genai_build"), "advice": data.get("advice"),
                      "stderr": info.stderr[-500:]}
    explicit = cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "-t", "Hello! How are you today?",
                   "--max-tokens", "24", "-e", "cuda", "--json")
    report["explicit_cuda"] = {"rc": explicit.returncode, "stderr": explicit.stderr[-500:],
                               "result": json.loads(explicit.stdout) if explicit.returncode == 0 else None}
    with tempfile.TemporaryDirectory() as workdir:
        variant = cuda_variant_copy(Path(workdir))
        auto = cli("run", "-m", str(variant), "-t", "Hello", "--max-tokens", "8", "--json")
        report["auto_cuda_variant"] = {"rc": auto.returncode, "stderr": auto.stderr[-500:],
                                       "ep": json.loads(auto.stdout)["execution_provider"] if auto.returncode == 0 else None}
        hidden = {"CUDA_VISIBLE_DEVICES": ""}
        fallback = cli("run", "-m", str(variant), "-t", "Hello", "--max-tokens", "8", "--json", env=hidden)
        report["auto_fallback_without_gpu"] = {"rc": fallback.returncode, "stderr": fallback.stderr[-500:],
                                               "ep": json.loads(fallback.stdout)["execution_provider"] if fallback.returncode == 0 else None}
        strict = cli("run", "-m", str(variant), "-t", "Hello", "--max-tokens", "8", "-e", "cuda", env=hidden)
        report["explicit_cuda_without_gpu"] = {"rc": strict.returncode, "stderr": strict.stderr[-500:]}
    try:
        report["parity"] = parity_on_cuda()
    except Exception as error:  # noqa: BLE001 - report, don't crash: this is a diagnostic
        report["parity"] = [{"error": repr(error), "equal": False}]
    checks = {
        "nvml_sees_gpu": bool(report["info"]["gpus"]),
        "cuda_available": "cuda" in (report["info"]["execution_providers"] or {}).get("available", []),
        "explicit_cuda_runs_on_cuda": (report["explicit_cuda"]["result"] or {}).get("execution_provider") == "cuda",
        "auto_picks_cuda_for_cuda_variant": report["auto_cuda_variant"]["ep"] == "cuda",
        "auto_falls_back_to_cpu": report["auto_fallback_without_gpu"]["ep"] == "cpu",
        "explicit_never_falls_back": report["explicit_cuda_without_gpu"]["rc"] != 0,
        "greedy_parity_all_cases": all(row["equal"] for row in report["parity"]),
    }
    report["checks"] = checks
    print(json.dumps(report, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
