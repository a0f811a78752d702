"""Which onnxruntime-genai build is installed, and the exact command that swaps it.

The CPU, CUDA and DirectML wheels all install the same `onnxruntime_genai` module (and each pulls
its own onnxruntime build into the same `onnxruntime` namespace), so only one may be installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class GenaiBuild:
    distribution: str  # the pip name of the genai wheel
    runtime: str  # the onnxruntime wheel it runs on
    kind: str  # cpu | cuda | directml
    runtime_extras: str = ""  # pip extras that bring the runtime's own GPU libraries

    @property
    def install_args(self) -> str:
        runtime = f'"{self.runtime}[{self.runtime_extras}]"' if self.runtime_extras else self.runtime
        return f"{self.distribution} {runtime}"


GENAI_BUILDS = (
    GenaiBuild("onnxruntime-genai", "onnxruntime", "cpu"),
    # onnxruntime-gpu 1.31 is built for CUDA 13; its extras install cuBLAS/cuDNN/... from PyPI.
    GenaiBuild("onnxruntime-genai-cuda", "onnxruntime-gpu", "cuda", "cuda,cudnn"),
    GenaiBuild("onnxruntime-genai-directml", "onnxruntime-directml", "directml"),
)


def installed_genai_builds() -> list[tuple[GenaiBuild, str]]:
    """Every genai build installed, with its version (more than one is a broken install)."""
    found = []
    for build in GENAI_BUILDS:
        try:
            found.append((build, metadata.version(build.distribution)))
        except metadata.PackageNotFoundError:
            continue
    return found


def swap_command(target_kind: str) -> str:
    """The pip command that replaces whatever genai build is installed by `target_kind`'s."""
    target = next(build for build in GENAI_BUILDS if build.kind == target_kind)
    others = [b for b in GENAI_BUILDS if b.kind != target_kind]
    remove = " ".join(name for b in others for name in (b.distribution, b.runtime))
    return f"pip uninstall -y {remove} && pip install {target.install_args}"
