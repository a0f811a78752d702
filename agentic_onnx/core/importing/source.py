"""What `onnx import` is asked to convert, checked before anything is built.

A source is a local Hugging Face folder (config.json, safetensors, tokenizer), a hub repo id
(downloaded first, see core/importing/importer.py), or a `.gguf` file with a folder that holds its
config.json and tokenizer. Everything here reads only headers and small files: the
architecture (against the installed builder's own list), the parameter count (safetensors
and GGUF headers, not the weights), a GGUF file's tensor types (quantized ones cannot be
converted), and the dependencies the converter needs. No torch, no transformers.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from agentic_onnx.core.errors import ImportRefusedError, MissingExtraError, ModelNotFoundError

GGUF_SUFFIX = ".gguf"
CONFIG_FILE = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Files of a checkpoint that the conversion reads (hashed into the manifest) and downloads.
SOURCE_SUFFIXES = (".json", ".safetensors", ".model", ".txt", ".jinja", ".tiktoken", ".py")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# GGUF tensor types the builder's GGUF loader reads (it turns them into torch tensors as is).
GGUF_FLOAT_TYPES = {"F32", "F16"}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "F32": 4, "F16": 2, "BF16": 2,
               "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class SourceSpec:
    """SOURCE as given, classified: `folder` and `gguf` are local paths; `hub` is a repo id."""

    kind: str  # folder | gguf | hub
    path: Path | None = None
    repo: str | None = None


@dataclass(frozen=True)
class CheckedSource:
    """A local source the builder can convert: what to pass it and what the estimates use."""

    kind: str  # folder | gguf (a hub source becomes a folder once downloaded)
    input_path: Path  # `-i`: the folder or the .gguf file
    config_dir: Path  # the folder with config.json and the tokenizer (`-m` for a GGUF)
    architecture: str
    parameters: int
    weight_bytes: int

    def files(self) -> list[Path]:
        """The files the conversion reads, to hash into the manifest."""
        found = [p for p in sorted(self.config_dir.rglob("*"))
                 if p.is_file() and p.name.endswith(SOURCE_SUFFIXES + WEIGHT_SUFFIXES)
                 and ".cache" not in p.parts]
        return found + ([self.input_path] if self.kind == "gguf" else [])


def classify_source(source: str) -> SourceSpec:
    """A folder or .gguf file that exists; else `org/name` is a hub repo; else not found."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == GGUF_SUFFIX:
        return SourceSpec("gguf", path=path.resolve())
    if path.is_dir():
        return SourceSpec("folder", path=path.resolve())
    if path.is_file():
        raise ImportRefusedError(
            f"{source} is a file but not a .gguf file.",
            "Pass a Hugging Face model folder (config.json + safetensors), a hub repo id or a .gguf file.")
    looks_like_path = source.startswith((".", "~", "/")) or source.count("/") > 1 or "\\" in source
    if _REPO_ID.fullmatch(source) and not looks_like_path:
        return SourceSpec("hub", repo=source)
    raise ModelNotFoundError(f"{source!r} is not a folder, a .gguf file or a hub repo id (org/name).",
                             "Check the path, or pass a repo id such as microsoft/Phi-3-mini-4k-instruct.")


def check_folder(folder: Path) -> CheckedSource:
    """A Hugging Face checkpoint folder the builder supports (architecture and weights present)."""
    config = read_config(folder)
    architecture = _architecture(config, folder)
    require_supported(architecture, gguf=False)
    parameters, weight_bytes = safetensors_size(folder)
    if weight_bytes == 0:
        weights = [p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
        if not weights:
            raise ImportRefusedError(f"{folder} holds no weights (*.safetensors or *.bin).",
                                     "Point at the folder that holds the checkpoint's weight files.")
        weight_bytes = sum(p.stat().st_size for p in weights)
        parameters = weight_bytes // DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype")), 4)
    return CheckedSource("folder", folder, folder, architecture, parameters, weight_bytes)


def check_gguf(path: Path, config_dir: Path | None) -> CheckedSource:
    """An fp32/fp16 GGUF of a supported architecture, with a folder for config.json and the
    tokenizer (the builder reads only the weights from the GGUF file)."""
    require_gguf_package()
    types, parameters = gguf_tensor_types(path)
    quantized = sorted(t for t in types if t not in GGUF_FLOAT_TYPES)
    if quantized:
        raise ImportRefusedError(
            f"{path.name} is a quantized GGUF ({', '.join(quantized)} tensors): the model builder "
            "converts only fp32 and fp16 GGUF files.",
            "Import the same model's safetensors (its Hugging Face repo or folder) with "
            "--precision int4, or an fp16/fp32 GGUF of it.")
    folder = config_dir or path.parent
    if not (folder / CONFIG_FILE).is_file():
        raise ImportRefusedError(
            f"A GGUF import needs the model's {CONFIG_FILE} and tokenizer, and {folder} has none.",
            "Pass --config DIR: the original model's folder (config.json, tokenizer.json, "
            "tokenizer_config.json), e.g. downloaded from its Hugging Face repo.")
    config = read_config(folder)
    architecture = _architecture(config, folder)
    require_supported(architecture, gguf=True)
    return CheckedSource("gguf", path, folder.resolve(), architecture, parameters, path.stat().st_size)


def read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportRefusedError(
            f"{folder} holds no {CONFIG_FILE}: it is not a Hugging Face model folder.",
            "Point at the folder with config.json, the weights (*.safetensors) and the tokenizer.") from None
    except (OSError, ValueError) as error:
        raise ImportRefusedError(f"Cannot read {path}: {error}.", "Check the file.") from None
    if not isinstance(config, dict):
        raise ImportRefusedError(f"{path} is not a JSON object.", "Check the file.")
    return config


def _architecture(config: dict, folder: Path) -> str:
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
        raise ImportRefusedError(f"{folder / CONFIG_FILE} names no architecture (`architectures`).",
                                 "Only checkpoints saved by transformers can be converted.")
    return architectures[0]


def require_supported(architecture: str, gguf: bool) -> None:
    supported = supported_architectures(gguf)
    if supported is None or architecture in supported:
        return  # an unreadable builder list: the builder itself will say
    where = "GGUF loader" if gguf else "model builder"
    raise ImportRefusedError(
        f"{architecture} is not an architecture the onnxruntime-genai {where} supports.",
        f"Supported: {', '.join(sorted(supported))}. A newer onnxruntime-genai may add it.")


def supported_architectures(gguf: bool = False) -> frozenset[str] | None:
    """The architectures the installed builder dispatches on, read from its source (importing it
    would import torch). None when the source cannot be found or read."""
    spec = importlib.util.find_spec("onnxruntime_genai")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "models"
    source, pattern = ((root / "loaders" / "gguf.py", r'model_type == "(\w+)"') if gguf
                       else (root / "builder.py", r'architectures\[0\] == "(\w+)"'))
    try:
        names = frozenset(re.findall(pattern, source.read_text(encoding="utf-8")))
    except OSError:
        return None
    return names or None


def safetensors_size(folder: Path) -> tuple[int, int]:
    """(parameters, bytes) of the folder's *.safetensors, from their headers only."""
    parameters = total = 0
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with path.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(min(length, 100_000_000)))
        except (OSError, ValueError, struct.error) as error:
            raise ImportRefusedError(f"{path.name} is not a readable safetensors file ({error}).",
                                     "Check the download of the checkpoint.") from None
        for name, tensor in header.items():
            if name != "__metadata__" and isinstance(tensor, dict):
                parameters += math.prod(tensor.get("shape") or [1])
        total += path.stat().st_size
    return parameters, total


def gguf_tensor_types(path: Path) -> tuple[set[str], int]:
    """({tensor type names}, parameters) of a GGUF file, memory-mapped (the weights are not read)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError, struct.error) as error:
        raise ImportRefusedError(f"{path.name} is not a readable GGUF file ({error}).",
                                 "Check the file.") from None
    types = {tensor.tensor_type.name for tensor in reader.tensors}
    return types, sum(int(tensor.n_elements) for tensor in reader.tensors)


# -- the converter's dependencies -----------------------------------------------------------------

IMPORT_EXTRA = 'pip install "agentic-onnx[import]"'
CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
BUILDER_MODULES = ("torch", "transformers", "onnx", "onnx_ir", "safetensors", "tqdm")


def require_builder_packages() -> None:
    """The builder's own imports are in the `import` extra, not the base install."""
    missing = [name for name in BUILDER_MODULES if not module_available(name)]
    if missing:
        raise MissingExtraError(
            f"Converting a model needs {', '.join(missing)}, which the base install leaves out.",
            f"Install them with `{IMPORT_EXTRA}` (CPU only: first `{CPU_TORCH}`, a smaller torch "
            "without CUDA).")


def require_gguf_package() -> None:
    if not module_available("gguf"):
        raise MissingExtraError("Reading a GGUF file needs the gguf package, which the base install "
                                "leaves out.", f"Install it with `{IMPORT_EXTRA}` (or `pip install gguf`).")


def module_available(name: str) -> bool:
    """Installed, without importing it (torch alone takes seconds)."""
    return importlib.util.find_spec(name) is not None
