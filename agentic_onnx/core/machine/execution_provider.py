"""Choosing the execution provider (EP) for a model variant on this machine.

`auto` picks CUDA > DirectML > WebGPU > CPU among the EPs that the installed genai build can use
*and* that the variant was built for (CPU always qualifies). An explicitly requested EP that is
unavailable is an error that says what to install: it never silently becomes the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from agentic_onnx.core.errors import ExecutionProviderUnavailableError, UsageError
from agentic_onnx.core.machine.genai_build import swap_command
from agentic_onnx.core.models.model_folder import ModelFolder

EP_PREFERENCE = ("cuda", "dml", "webgpu", "cpu")
EP_CHOICES = ("auto", *EP_PREFERENCE)
EP_LABELS = {"cuda": "CUDA", "dml": "DirectML", "webgpu": "WebGPU", "cpu": "CPU"}


@dataclass(frozen=True)
class ExecutionChoice:
    provider: str  # the EP to try first
    requested: str  # what the user asked for (auto or an EP)
    reason: str  # one sentence: why this EP
    warning: str | None = None  # something the user should know (variant mismatch)

    @property
    def may_fall_back_to_cpu(self) -> bool:
        """Only `auto` falls back, and only from a GPU EP."""
        return self.requested == "auto" and self.provider != "cpu"


# The onnxruntime provider that must be present for each genai EP name.
_ORT_PROVIDERS = {"cuda": "CUDAExecutionProvider", "dml": "DmlExecutionProvider",
                  "webgpu": "WebGpuExecutionProvider"}


def available_execution_providers(candidates: Iterable[str] = EP_PREFERENCE) -> list[str]:
    """The EPs among `candidates` that this install can use, in preference order; `cpu` always.

    genai's own `is_*_available` flags are necessary but not sufficient (the 0.18 CPU wheel
    says WebGPU is available, then fails to create the session), so a GPU EP also needs its
    onnxruntime provider. Only the candidates asked about are probed: importing onnxruntime
    costs ~0.2 s, which a CPU model on `auto` never pays.
    """
    wanted = [ep for ep in EP_PREFERENCE if ep in set(candidates) and ep != "cpu"]
    if not wanted:
        return ["cpu"]
    import onnxruntime_genai as og

    flags = {"cuda": og.is_cuda_available, "dml": og.is_dml_available,
             "webgpu": og.is_webgpu_available}
    claimed = [ep for ep in wanted if _safe(flags[ep])]
    if claimed:
        import onnxruntime

        runtime = set(onnxruntime.get_available_providers())
        claimed = [ep for ep in claimed if _ORT_PROVIDERS[ep] in runtime]
    return [*claimed, "cpu"]


def _safe(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - a probe that fails means "not available"
        return False


def candidates_for(requested: str, model: ModelFolder) -> set[str]:
    """The EPs whose availability decides the choice for this request."""
    return {model.built_for} if requested == "auto" else {requested}


def choose_execution_provider(
    requested: str, model: ModelFolder, available: Sequence[str]
) -> ExecutionChoice:
    """Decide which EP runs `model`. Pure: `available` comes from the caller."""
    requested = requested.lower()
    if requested not in EP_CHOICES:  # a typo, not a missing install: a usage error
        raise UsageError(f"Unknown execution provider {requested!r}.",
                         f"Use one of: {', '.join(EP_CHOICES)}.")
    built_for = model.built_for
    if requested != "auto":
        return _explicit_choice(requested, built_for, available)
    for provider in EP_PREFERENCE:
        if provider in available and (provider == "cpu" or provider == built_for):
            if provider == "cpu" and built_for != "cpu":
                return ExecutionChoice(
                    "cpu", "auto",
                    f"the model was built for {EP_LABELS[built_for]}, which is not available here",
                    warning=f"{model.name} is a {EP_LABELS[built_for]} variant but "
                    f"{EP_LABELS[built_for]} is unavailable; running it on the CPU (slow). "
                    f"{_install_hint(built_for)}",
                )
            reason = ("the model is a CPU variant" if provider == "cpu"
                      else f"the model is a {EP_LABELS[provider]} variant and {EP_LABELS[provider]} is available")
            return ExecutionChoice(provider, "auto", reason)
    raise AssertionError("cpu is always available")  # pragma: no cover


def _explicit_choice(requested: str, built_for: str, available: Sequence[str]) -> ExecutionChoice:
    if requested not in available:
        raise ExecutionProviderUnavailableError(
            f"The {EP_LABELS[requested]} execution provider is not available in this install.",
            _install_hint(requested),
        )
    warning = None
    if requested != built_for:
        warning = (f"this model is a {EP_LABELS[built_for]} variant; on {EP_LABELS[requested]} "
                   "it may be slow or fail to load. A matching variant runs best.")
    return ExecutionChoice(requested, requested, "requested with --execution-provider", warning)


def _install_hint(provider: str) -> str:
    if provider == "cuda":
        return ("It needs an NVIDIA GPU, its driver, and the CUDA build of onnxruntime-genai: "
                f"`{swap_command('cuda')}`.")
    if provider == "dml":
        return ("It needs Windows and the DirectML build of onnxruntime-genai: "
                f"`{swap_command('directml')}`.")
    if provider == "webgpu":
        return "It needs an onnxruntime-genai build with WebGPU support (see docs/install.md)."
    return "Use --execution-provider cpu."
