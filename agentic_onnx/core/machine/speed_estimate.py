"""How fast a model will decode here, estimated before it is downloaded.

Each decoded token reads (nearly) every weight once, so decode is bounded by how fast the
machine can stream the weights: `read bandwidth / bytes read per token`. On a CPU with few
cores the int4 matmuls cannot keep up with memory, so a second, compute bound applies:
`cores x int4 throughput per core / bytes read per token`. The estimate is the smaller of the
two. The constants are calibrated against the team's recorded `onnx benchmark` runs of the
Phi-3-mini shape (docs/catalog.md, "Speed estimate"); everything here is pure, so tests pass in
the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9

# A reply is pleasant to read as it streams from about 5 tokens/s (~4 words/s, reading speed);
# below it, waiting dominates. `recommend` prefers the best model that reaches this rate.
USABLE_TOKENS_PER_S = 5.0

# Bytes read per token / download size. The Phi-3-mini int4 CPU build is 2.72 GB on disk and
# reads 2.33 GB per token: the embedding table is stored but only one row of it is read.
WEIGHTS_READ_SHARE = 2.33 / 2.72

# A decode step interleaves matmuls with attention, norms and sampling, so it streams below the
# probe's pure read rate. 0.8 is typical of memory-bound decoders (an assumption: on the 2-core
# machine we calibrated on, the compute bound is the binding one).
MEMORY_EFFICIENCY = 0.8

# int4 weights (block 32, accuracy level 4) one core turns through per second, GB/s.
# AVX-512: 11 tok/s x 2.33 GB = 25.6 GB/s on 2 cores (the team's recorded runs, a Xeon).
# AVX2: 7.23 tok/s x 2.33 GB = 16.8 GB/s on 2 cores (measured: `onnx benchmark` of the
# Phi-3-mini shape on a 2-core AMD EPYC without AVX-512, docs/catalog.md). NEON figures are
# scaled by vector width and are assumptions until someone benchmarks such a machine.
INT4_GBPS_PER_CORE = (
    (("avx512f", "avx512bw"), 12.8),
    (("avx2",), 8.4),
    (("neon", "dotprod"), 6.4),
    (("neon",), 3.2),
)
INT4_GBPS_PER_CORE_BASELINE = 2.0  # SSE only

# GPUs: memory-bound at 60% of the bandwidth NVML states, plus a fixed cost per token for kernel
# launches (the fast shape ran ~1.1 ms/token on an H200, most of it launches; docs/performance.md).
GPU_EFFICIENCY = 0.6
GPU_TOKEN_OVERHEAD_S = 0.001
# Memory bandwidth by product name, GB/s (vendor datasheets), when NVML does not give it.
GPU_BANDWIDTH_GBPS = (
    ("H200", 4800), ("H100", 3350), ("A100", 1935), ("L40", 864), ("A10", 600), ("L4", 300),
    ("T4", 320), ("V100", 900), ("5090", 1792), ("4090", 1008), ("4080", 717), ("4070", 504),
    ("4060", 272), ("3090", 936), ("3080", 760), ("3070", 448), ("3060", 360), ("2080", 448),
    ("A6000", 768), ("A4000", 448),
)
GPU_BANDWIDTH_UNKNOWN_GBPS = 200.0  # an unnamed NVIDIA GPU: assume an entry-level card


@dataclass(frozen=True)
class SpeedFacts:
    """What the estimate needs to know about this machine."""

    cpu_read_gbps: float | None  # measured (core/machine/bandwidth.py); None: not measured
    cpu_threads: int  # intra-op threads the engine uses (physical cores)
    simd: tuple[str, ...]
    gpu_bandwidth_gbps: float | None = None  # of the GPU CUDA would use; None: unknown


@dataclass(frozen=True)
class SpeedEstimate:
    tokens_per_s: float
    bound: str  # what limits it: "memory bandwidth", "CPU compute", "GPU memory bandwidth"

    @property
    def usable(self) -> bool:
        return self.tokens_per_s >= USABLE_TOKENS_PER_S

    def label(self) -> str:
        """`~6 tok/s`, `~1.6 tok/s`, `~480 tok/s`."""
        return f"~{format_rate(self.tokens_per_s)} tok/s"


def format_rate(tokens_per_s: float) -> str:
    return f"{tokens_per_s:.1f}" if tokens_per_s < 10 else f"{tokens_per_s:.0f}"


def bytes_read_per_token(size_bytes: int) -> float:
    return size_bytes * WEIGHTS_READ_SHARE


def int4_gbps_per_core(simd: tuple[str, ...] | list[str]) -> float:
    for needed, rate in INT4_GBPS_PER_CORE:
        if all(flag in simd for flag in needed):
            return rate
    return INT4_GBPS_PER_CORE_BASELINE


def estimate_cpu(size_bytes: int, read_gbps: float, threads: int,
                 simd: tuple[str, ...] | list[str]) -> SpeedEstimate:
    """Decode tokens/s of a CPU int4 model of `size_bytes`: min(memory bound, compute bound)."""
    per_token = bytes_read_per_token(size_bytes)
    memory = MEMORY_EFFICIENCY * read_gbps * GB / per_token
    compute = max(1, threads) * int4_gbps_per_core(simd) * GB / per_token
    if compute < memory:
        return SpeedEstimate(compute, "CPU compute")
    return SpeedEstimate(memory, "memory bandwidth")


def estimate_gpu(size_bytes: int, bandwidth_gbps: float) -> SpeedEstimate:
    """Decode tokens/s on a GPU: weights streamed at GPU_EFFICIENCY of the bandwidth, plus
    kernel launches."""
    seconds = bytes_read_per_token(size_bytes) / (GPU_EFFICIENCY * bandwidth_gbps * GB)
    return SpeedEstimate(1 / (seconds + GPU_TOKEN_OVERHEAD_S), "GPU memory bandwidth")


def gpu_bandwidth_by_name(name: str) -> float:
    """A GPU's bandwidth from its product name; an entry-level figure for names not listed."""
    for key, gbps in GPU_BANDWIDTH_GBPS:
        if key.lower() in name.lower():
            return float(gbps)
    return GPU_BANDWIDTH_UNKNOWN_GBPS
