"""An onnxruntime-genai model folder: what its `genai_config.json` says, checked before loading."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agentic_onnx.core.errors import InvalidModelError, ModelNotFoundError

GENAI_CONFIG = "genai_config.json"

# Names used in genai_config.json's provider_options and by Config.append_provider.
GPU_EXECUTION_PROVIDERS = ("cuda", "dml", "webgpu")


@dataclass(frozen=True)
class ModelFolder:
    """A validated model folder. `variant_providers` are the EPs the variant was built for
    (empty for CPU variants), read from `decoder.session_options.provider_options`."""

    path: Path
    model_type: str
    decoder_filename: str
    context_length: int
    variant_providers: tuple[str, ...]
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None = None  # genai masks it: what batched prompts are padded with

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def built_for(self) -> str:
        """The EP this variant targets: its first GPU provider, else `cpu`."""
        for provider in self.variant_providers:
            if provider in GPU_EXECUTION_PROVIDERS:
                return provider
        return "cpu"


def open_model_folder(path: Path) -> ModelFolder:
    """Check that `path` holds a loadable genai model and read what we need from its config."""
    path = path.expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"Model path {str(path)!r} does not exist.",
            "Pass a folder that holds genai_config.json.",
        )
    if not path.is_dir():
        raise InvalidModelError(
            f"Model path {str(path)!r} is a file, not a model folder.",
            "Pass the folder that holds genai_config.json.",
        )
    config_path = path / GENAI_CONFIG
    if not config_path.is_file():
        raise InvalidModelError(
            f"{str(path)!r} has no {GENAI_CONFIG}: it is not an onnxruntime-genai model folder.",
            "Point --model at the folder that holds genai_config.json "
            "(for hub repos, the variant's subfolder).",
        )
    config = _read_config(config_path)
    return _parse_config(path, config_path, config)


def _read_config(config_path: Path) -> dict:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidModelError(
            f"{config_path} is not valid JSON ({error}).",
            "Re-download the model or restore the file.",
        ) from None
    if not isinstance(config, dict):
        raise InvalidModelError(f"{config_path} does not hold a JSON object.", "Re-download the model.")
    return config


def _parse_config(path: Path, config_path: Path, config: dict) -> ModelFolder:
    model = config.get("model")
    decoder = model.get("decoder") if isinstance(model, dict) else None
    if not isinstance(decoder, dict):
        raise InvalidModelError(
            f"{config_path} has no model.decoder section.", "Re-download the model."
        )
    filename = decoder.get("filename")
    if not isinstance(filename, str) or not filename:
        raise InvalidModelError(
            f"{config_path} names no decoder file (model.decoder.filename).", "Re-download the model."
        )
    if not (path / filename).is_file():
        raise InvalidModelError(
            f"The decoder file {filename!r} named by {config_path} is missing.",
            "The download is incomplete: download the model again.",
        )
    context_length = model.get("context_length")
    if not isinstance(context_length, int) or context_length <= 0:
        raise InvalidModelError(
            f"{config_path} has no valid model.context_length.", "Re-download the model."
        )
    eos = model.get("eos_token_id", [])
    eos_ids = tuple(eos) if isinstance(eos, list) else (eos,)
    return ModelFolder(
        path=path.resolve(),
        model_type=str(model.get("type", "unknown")),
        decoder_filename=filename,
        context_length=context_length,
        variant_providers=_variant_providers(decoder),
        eos_token_ids=tuple(int(i) for i in eos_ids),
        pad_token_id=pad if isinstance(pad := model.get("pad_token_id"), int)
        and not isinstance(pad, bool) else None,
    )


def _variant_providers(decoder: dict) -> tuple[str, ...]:
    options = (decoder.get("session_options") or {}).get("provider_options") or []
    names: list[str] = []
    for entry in options:
        if isinstance(entry, dict):
            names.extend(str(key).lower() for key in entry)
    return tuple(names)
