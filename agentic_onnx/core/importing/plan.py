"""`onnx import`'s choices and budgets: the precision and EP, the builder options, and whether the
conversion fits this machine's memory and disk (docs/import.md has the measurements).

The builder's peak memory grows with the parameter count: it holds the checkpoint's tensors,
the ONNX graph's copies and, when quantizing, fp32 upcasts of each weight. Measured here with
onnxruntime-genai 0.18 (CPU, 2 cores): a tiny checkpoint peaks at ~460 MB (torch, transformers
and onnx imported); a 168 M-parameter Phi-3-shaped model at 1.15 GB for fp32 and 1.82 GB for
int4; the Phi-3-mini shape (3.82 B parameters, bf16, int4 block 32) at 22.6 GB in 181 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentic_onnx.core.errors import ExecutionProviderUnavailableError, ImportRefusedError, UsageError

PRECISIONS = ("int4", "int8", "fp16", "fp32")
EXECUTION_PROVIDERS = ("cpu", "cuda", "dml", "webgpu")
# The builder's valid (precision, EP) pairs, from its own list (TRT-RTX and bf16 left out).
VALID_COMBINATIONS = {("fp32", "cpu"), ("fp32", "cuda"), ("fp16", "cuda"), ("fp16", "dml"),
                      ("int8", "cpu"), ("int8", "cuda"), ("int8", "webgpu"), ("int4", "cpu"),
                      ("int4", "cuda"), ("int4", "dml"), ("int4", "webgpu")}
# What the catalog ships for each EP: int4 everywhere (block 32; accuracy level 4 on the CPU).
DEFAULT_PRECISION = {"cpu": "int4", "cuda": "int4", "dml": "int4", "webgpu": "int4"}
BLOCK_SIZES = (16, 32, 64, 128, 256)
ACCURACY_LEVELS = (1, 2, 3, 4)

BUILDER_BASE_BYTES = 500_000_000  # the builder process before any weight (measured ~460 MB)
# Peak bytes per parameter on top of that. int4/int8: 22.6 GB for Phi-3-mini's 3.82 B parameters
# (5.8); fp16/fp32: 1.15 GB for 168 M parameters (4.0), plus headroom.
PEAK_BYTES_PER_PARAMETER = {"int4": 6.0, "int8": 6.0, "fp16": 4.5, "fp32": 4.5}
# What lands on disk per parameter (int4 keeps the embedding table in fp32: 0.7 for
# Phi-3-mini, 1.3 for a 168 M model with a 32 k vocabulary).
OUTPUT_BYTES_PER_PARAMETER = {"int4": 1.0, "int8": 1.5, "fp16": 2.1, "fp32": 4.1}


@dataclass(frozen=True)
class Target:
    precision: str
    execution_provider: str
    extra_options: dict[str, str]


def choose_target(precision: str | None, execution_provider: str | None, block_size: int | None,
                  accuracy_level: int | None) -> Target:
    """The EP (default: the best this install can use, as `auto` picks), the precision
    (default: the catalog's for that EP) and the builder options that matter."""
    from agentic_onnx.core.machine.execution_provider import available_execution_providers

    available = available_execution_providers()
    if execution_provider in (None, "auto"):
        execution_provider = available[0]
    elif execution_provider not in EXECUTION_PROVIDERS:
        raise UsageError(f"Unknown execution provider {execution_provider!r}.",
                         f"Use one of {', '.join(EXECUTION_PROVIDERS)}.")
    elif execution_provider not in available:
        raise ExecutionProviderUnavailableError(
            f"This install cannot use the {execution_provider} execution provider, so a model "
            f"built for it could not be run or checked here.",
            "Leave out -e to build for this machine; `agentic-onnx onnx info` lists what is usable.")
    precision = precision or DEFAULT_PRECISION[execution_provider]
    if precision not in PRECISIONS:
        raise UsageError(f"Unknown precision {precision!r}.", f"Use one of {', '.join(PRECISIONS)}.")
    if (precision, execution_provider) not in VALID_COMBINATIONS:
        valid = sorted(p for p, ep in VALID_COMBINATIONS if ep == execution_provider)
        raise ImportRefusedError(f"The model builder cannot make a {precision} model for "
                                 f"{execution_provider}.", f"For {execution_provider} use --precision "
                                 f"{' or '.join(valid)}.")
    return Target(precision, execution_provider, _extra_options(precision, block_size, accuracy_level))


def _extra_options(precision: str, block_size: int | None, accuracy_level: int | None) -> dict[str, str]:
    options: dict[str, str] = {}
    quantized = precision in ("int4", "int8")
    for flag, value, allowed, key in (("--block-size", block_size, BLOCK_SIZES, "block_size"),
                                      ("--accuracy-level", accuracy_level, ACCURACY_LEVELS, "accuracy_level")):
        if value is None:
            continue
        if not quantized:
            raise UsageError(f"{flag} applies to int4 and int8 only, not {precision}.",
                             f"Leave out {flag}, or pass --precision int4.")
        if value not in allowed:
            raise UsageError(f"{flag} must be one of {', '.join(map(str, allowed))}.")
        options[key] = str(value)
    return options


@dataclass(frozen=True)
class Budget:
    """What a conversion is expected to need, and what this machine has."""

    parameters: int
    peak_memory_bytes: int
    output_bytes: int
    available_memory_bytes: int

    @property
    def memory_fits(self) -> bool:
        return self.peak_memory_bytes <= self.available_memory_bytes


def budget_for(parameters: int, precision: str, available_memory_bytes: int | None = None) -> Budget:
    import psutil

    if available_memory_bytes is None:
        available_memory_bytes = psutil.virtual_memory().available
    peak = BUILDER_BASE_BYTES + int(parameters * PEAK_BYTES_PER_PARAMETER[precision])
    output = int(parameters * OUTPUT_BYTES_PER_PARAMETER[precision]) + 50_000_000  # + tokenizer
    return Budget(parameters, peak, output, available_memory_bytes)


def require_memory(budget: Budget, precision: str) -> None:
    from agentic_onnx.core.models.store import format_bytes

    if budget.memory_fits:
        return
    cheaper = " Building fp32 needs less than int4 (no upcast for quantizing)." \
        if precision in ("int4", "int8") else ""
    raise ImportRefusedError(
        f"Converting this {budget.parameters / 1e9:.2f} B-parameter model to {precision} needs about "
        f"{format_bytes(budget.peak_memory_bytes)} of memory, and {format_bytes(budget.available_memory_bytes)} "
        f"is available.{cheaper}",
        "Close other programs, convert on a machine with more memory, or download a ready-made "
        "ONNX model (`agentic-onnx onnx models`).")
