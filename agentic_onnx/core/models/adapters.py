"""LoRA adapters: a base model with LoRA inputs, `.onnx_adapter` files beside it, one chosen per
generator.

onnxruntime-genai 0.18 applies an adapter at run time (`og.Adapters`, `set_active_adapter`):
onnxruntime feeds the adapter's tensors to graph inputs of the same names. Its model builder,
given a PEFT folder (`adapter_path`), bakes that one adapter's weights into the graph as constant
LoRA MatMuls, so a plain export cannot take other adapters. `make_lora_ready` turns those
constants into graph inputs (symbolic rank, zero defaults: without an adapter the answer is the
base model's, exactly), and `convert_peft_adapter` writes any PEFT LoRA with the same target
modules as an `.onnx_adapter` whose tensor names are those inputs. A base exported without
LoRA has no such inputs and cannot take adapters: `require_lora_ready` says so in one line.

Adapters live in `<model folder>/adapters/<name>.onnx_adapter` and are listed with their base.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentic_onnx.core.errors import ModelNotFoundError, UsageError

ADAPTER_SUFFIX = ".onnx_adapter"
ADAPTERS_DIR = "adapters"
LORA_RANK_DIM = "lora_rank"
# The builder's names for the LoRA MatMul weights: model.layers.0.attn.q_proj.lora_A.MatMul.weight
_LORA_INITIALIZER = re.compile(r"^model\.layers\.\d+\.(attn|mlp)\.\w+\.lora_[AB]\.MatMul\.weight$")
_PEFT_KEY = re.compile(
    r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AdapterError(UsageError):
    """An adapter that does not fit its base, or a base that cannot take adapters."""


class AdapterNotFoundError(ModelNotFoundError):
    """`--adapter NAME` names no adapter of the model (HTTP: the API's 404)."""


# --------------------------------------------------------------------------- the base model
def _decoder_file(folder: Path) -> Path:
    config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))
    return folder / config["model"]["decoder"]["filename"]


def lora_inputs(folder: Path) -> dict[str, tuple[int, ...]]:
    """The LoRA inputs of a model folder's decoder: name -> shape (the rank dim as -1). Reads
    only the graph (never the weights), so it is cheap for any model size."""
    import onnx

    model = onnx.load(str(_decoder_file(folder)), load_external_data=False)
    found: dict[str, tuple[int, ...]] = {}
    for graph_input in model.graph.input:
        if _LORA_INITIALIZER.match(graph_input.name):
            dims = graph_input.type.tensor_type.shape.dim
            found[graph_input.name] = tuple(d.dim_value if d.HasField("dim_value") else -1
                                            for d in dims)
    return found


def require_lora_ready(folder: Path, name: str) -> dict[str, tuple[int, ...]]:
    """The LoRA inputs of `folder`, or the one-line error when it has none."""
    inputs = lora_inputs(folder)
    if not inputs:
        raise AdapterError(
            f"{name} was built without LoRA inputs, so it cannot take adapters.",
            "Use a base built LoRA-ready (docs/import.md, Adapters).")
    return inputs


def make_lora_ready(folder: Path) -> list[str]:
    """Turn the LoRA MatMul weights the builder baked into `folder`'s decoder into graph inputs
    (rank dim symbolic) whose defaults are zeros of rank 1, so the model without an adapter is
    the base model. Rewrites only the graph file; the (now unused) baked bytes stay in the
    external data file. Returns the input names."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    path = _decoder_file(folder)
    model = onnx.load(str(path), load_external_data=False)
    names: list[str] = []
    for index, init in enumerate(model.graph.initializer):
        if not _LORA_INITIALIZER.match(init.name):
            continue
        rows, cols = init.dims
        is_a = ".lora_A." in init.name
        shape = (rows, 1) if is_a else (1, cols)
        dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        zero = numpy_helper.from_array(np.zeros(shape, dtype=dtype), init.name)
        model.graph.initializer[index].CopyFrom(zero)
        symbolic = [rows, LORA_RANK_DIM] if is_a else [LORA_RANK_DIM, cols]
        model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, symbolic))
        names.append(init.name)
    if not names:
        raise AdapterError(f"{folder.name} has no LoRA weights to turn into inputs.",
                           "Export it with the builder's adapter_path option first.")
    onnx.save(model, str(path))
    return names


# --------------------------------------------------------------------------- PEFT -> .onnx_adapter
@dataclass(frozen=True)
class PeftLora:
    """What we read of a PEFT LoRA folder."""

    folder: Path
    rank: int
    alpha: float
    rslora: bool
    target_modules: tuple[str, ...]

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)


def read_peft(folder: Path) -> PeftLora:
    """The LoRA settings of a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)."""
    config_path = folder / "adapter_config.json"
    if not config_path.is_file() or not (folder / "adapter_model.safetensors").is_file():
        raise AdapterError(f"{folder} is not a PEFT adapter folder.",
                           "It needs adapter_config.json and adapter_model.safetensors.")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{folder} is a {config.get('peft_type')} adapter; only LoRA is supported.")
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("use_dora"):
        raise AdapterError(f"{folder} uses rank/alpha patterns or DoRA, which are not supported.",
                           "Use a LoRA adapter with one rank and alpha for every module.")
    targets = config.get("target_modules") or []
    return PeftLora(folder, int(config["r"]), float(config.get("lora_alpha", config["r"])),
                    bool(config.get("use_rslora")),
                    tuple([targets] if isinstance(targets, str) else targets))


def onnx_lora_tensors(peft: PeftLora) -> dict[str, Any]:
    """The adapter's tensors under the builder's names: A transposed, B transposed and scaled
    (what the builder bakes in)."""
    from safetensors.numpy import load_file

    tensors: dict[str, Any] = {}
    for key, value in load_file(str(peft.folder / "adapter_model.safetensors")).items():
        match = _PEFT_KEY.match(key)
        if match is None:
            raise AdapterError(f"{peft.folder}: unsupported LoRA weight {key}.",
                               "Only decoder-layer attention and MLP projections are supported.")
        layer, block, module, which = match.groups()
        block = "attn" if block == "self_attn" else block
        name = f"model.layers.{layer}.{block}.{module}.lora_{which}.MatMul.weight"
        tensors[name] = value.T if which == "A" else (value * peft.scaling).T
    return tensors


def convert_peft_adapter(peft_folder: Path, base_folder: Path, base_name: str,
                         target: Path) -> Path:
    """Write the PEFT LoRA in `peft_folder` as an `.onnx_adapter` for the LoRA-ready base in
    `base_folder`, written to `target` (atomically). Every tensor must be one of the base's
    LoRA inputs with the same outer shape; inputs the adapter does not set keep their zeros."""
    import numpy as np
    import onnxruntime as ort

    inputs = require_lora_ready(base_folder, base_name)
    tensors = onnx_lora_tensors(read_peft(peft_folder))
    dtype = _input_dtype(base_folder)
    params = {}
    for name, value in tensors.items():
        expected = inputs.get(name)
        if expected is None:
            raise AdapterError(
                f"The adapter sets {name}, which {base_name} was not built to take.",
                "Build the base LoRA-ready with an adapter that targets the same modules.")
        if any(want not in (-1, got) for want, got in zip(expected, value.shape)):
            raise AdapterError(f"The adapter's {name} has shape {value.shape}, "
                               f"{base_name} expects {expected}.")
        params[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value, dtype=dtype))
    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters(params)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    adapter.export_adapter(str(partial))
    partial.replace(target)
    return target


def _input_dtype(folder: Path) -> Any:
    import onnx
    from onnx import helper

    model = onnx.load(str(_decoder_file(folder)), load_external_data=False)
    for graph_input in model.graph.input:
        if _LORA_INITIALIZER.match(graph_input.name):
            return helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
    return "float32"


# --------------------------------------------------------------------------- adapters of a model
def check_adapter_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"Invalid adapter name {name!r}.",
                         "Use letters, digits, '.', '_' or '-' (at most 64 characters).")
    return name


def adapter_path(folder: Path, name: str) -> Path:
    return folder / ADAPTERS_DIR / f"{check_adapter_name(name)}{ADAPTER_SUFFIX}"


def installed_adapters(folder: Path) -> dict[str, Path]:
    """The adapters kept beside a model: name -> file, sorted by name."""
    directory = folder / ADAPTERS_DIR
    if not directory.is_dir():
        return {}
    return {path.name[: -len(ADAPTER_SUFFIX)]: path
            for path in sorted(directory.iterdir())
            if path.is_file() and path.name.endswith(ADAPTER_SUFFIX)}


def resolve_adapter(folder: Path, model_name: str, adapter: str) -> Path:
    """`--adapter PATH_OR_NAME`: an `.onnx_adapter` file, or the name of one beside the model."""
    candidate = Path(adapter).expanduser()
    if adapter.endswith(ADAPTER_SUFFIX) and candidate.is_file():
        return candidate.resolve()
    found = installed_adapters(folder).get(adapter)
    if found is None:
        known = ", ".join(installed_adapters(folder)) or "none"
        raise AdapterNotFoundError(
            f"{model_name} has no adapter {adapter!r} (installed: {known}).",
            "Import one with `agentic-onnx onnx import --adapter PEFT_FOLDER --base "
            f"{model_name}`, or pass a path to an {ADAPTER_SUFFIX} file.")
    return found.resolve()


# --------------------------------------------------------------------------- at run time
@dataclass
class AdapterSet:
    """The adapters loaded into one og.Model, each file once, shared by every generator of that
    model (so several adapters on one base cost their own small tensors, not another base)."""

    _adapters: Any = field(default=None, repr=False)
    _loaded: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def activate(self, og_model: Any, generator: Any, adapter_file: Path) -> None:
        """Make `generator` use the adapter in `adapter_file`, loading it on first use."""
        import onnxruntime_genai as og

        key = str(adapter_file)
        with self._lock:
            if self._adapters is None:
                self._adapters = og.Adapters(og_model)
            if key not in self._loaded:
                try:
                    self._adapters.load(key, key)
                except Exception as error:  # noqa: BLE001 - genai raises RuntimeError
                    raise AdapterError(f"Could not load the adapter {adapter_file}: {error}") from None
                self._loaded[key] = key
        try:
            generator.set_active_adapter(self._adapters, key)
        except Exception as error:  # noqa: BLE001 - a file that does not fit this base
            raise AdapterError(f"The adapter {adapter_file.name} does not fit this model: {error}",
                               "Convert it for this base with `agentic-onnx onnx import "
                               "--adapter`.") from None

    def loaded(self) -> Iterator[str]:
        return iter(list(self._loaded))


def adapter_for(folder: Any, adapter: str) -> Path:
    """`--adapter PATH_OR_NAME` for a loaded model's ModelFolder: the file, once the base is
    known to take adapters (else the one-line error)."""
    require_lora_ready(folder.path, folder.name)
    return resolve_adapter(folder.path, folder.name, adapter)


def import_adapter(peft_folder: Path, base: str, name: str | None = None) -> Path:
    """`onnx import --adapter PEFT_FOLDER --base NAME`: the PEFT LoRA converted into
    `<base folder>/adapters/<name>.onnx_adapter` (name: the PEFT folder's name by default)."""
    from agentic_onnx.core.models.resolve import resolve_model

    folder = resolve_model(base)
    target = adapter_path(folder.path, name or peft_folder.resolve().name)
    return convert_peft_adapter(peft_folder, folder.path, folder.name, target)


def lora_ready_extra_options(peft_folder: Path) -> dict[str, str]:
    """The builder option that exports a base with LoRA MatMuls (then `make_lora_ready`)."""
    read_peft(peft_folder)
    return {"adapter_path": str(peft_folder.resolve())}
