"""What `config validate` warns about: a config that is valid but probably not what was meant.

Besides the warnings loading already found (an untrusted project file, keys accepted and not
used: `LoadedConfig.warnings`), two checks: a cloud provider whose API key is unset (requests to
it will fail), and agentic-flow's onnxruntime keys, accepted for compatibility and ignored
(onnxruntime-genai reads those from the model's genai_config.json).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentic_onnx.router.config import LoadedConfig

# agentic-flow's per-provider onnxruntime settings: (the JSON key, the entry's attribute)
IGNORED_ENTRY_KEYS = (("graphOptimizationLevel", "graph_optimization_level"),
                      ("enableMemoryOptimization", "enable_memory_optimization"),
                      ("cudaOptions", "cuda_options"))


def validation_warnings(loaded: LoadedConfig) -> list[str]:
    """Every warning `config validate` reports: loading's own, then `likely_mistakes`."""
    return [*loaded.warnings, *likely_mistakes(loaded)]


def likely_mistakes(loaded: LoadedConfig) -> list[str]:
    """Keys that are unset, and seed keys that do nothing, one line per provider and kind."""
    config, result = loaded.config, []
    for name in config.provider_names():
        entry, needs_key = config.entry(name), config.provider_class(name).needs_key
        if needs_key and loaded.api_key(name) is None and name not in loaded.keyless:
            result.append(f"providers.{name}: no API key ({loaded.key_env_vars.get(name)} is "
                          "not set); requests to it will fail.")
        ignored = [key for key, attribute in IGNORED_ENTRY_KEYS
                   if getattr(entry, attribute) is not None]
        if ignored:
            result.append(f"providers.{name}: {', '.join(ignored)} accepted for compatibility and "
                          "ignored (onnxruntime-genai reads these from genai_config.json).")
    return result
