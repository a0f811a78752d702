"""agentic-flow's `router.config.json`, read as it is: its named providers and the keys we do
not act on yet.

agentic-flow users drop their file in. Two things make that work:

- **Named providers.** An entry called `ollama` is an OpenAI-compatible server on this machine
  (`http://localhost:11434/v1`; a `baseUrl` without a path gets `/v1`, as agentic-flow writes
  it) and is local while every URL is loopback; `gemini` is Google's OpenAI-compatible
  endpoint, its key from `GEMINI_API_KEY`. An entry with `modelPath` and no type is an onnx
  model. A project file's entry is never made local here: only the user's own file can say
  where private requests may go (project_config.py decides that).
- **Keys accepted and not used yet** (`gpuLayers`, `monitoring`, ...): listed once, in
  one warning, so a run never fails on them and the user knows they do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentic_onnx.router.provider_kinds import is_loopback_url, provider_class, provider_kinds

DOCS = "docs/router.md"


@dataclass(frozen=True)
class NamedProvider:
    """What an entry's name implies when it gives no `type`."""

    base_url: str
    key_env_var: str | None = None
    local: bool = False  # local while every URL is loopback
    kind: str = "openai"  # the type it is an entry of: an OpenAI-compatible endpoint


NAMED_PROVIDERS = {
    "ollama": NamedProvider("http://localhost:11434/v1", local=True),
    "gemini": NamedProvider("https://generativelanguage.googleapis.com/v1beta/openai/",
                            key_env_var="GEMINI_API_KEY"),
}


def named_provider(name: str, entry: Any) -> NamedProvider | None:
    """The preset for entry `name`, when its name implies one and it gives no other type."""
    preset = NAMED_PROVIDERS.get(name)
    if preset is None:
        return None
    kind = entry.get("type") if isinstance(entry, dict) else getattr(entry, "type", None)
    return preset if kind in (None, preset.kind) else None


def apply_named_providers(data: dict[str, Any], *, defaults: bool = True,
                          may_be_local: bool = True) -> dict[str, Any]:
    """`data` (substituted JSON) with the named providers filled in. `defaults`: give a missing
    `type`/`baseUrl`; `may_be_local`: mark an ollama entry on loopback local (the user's own
    file only). Always: ollama's `http://host:11434` becomes `http://host:11434/v1`."""
    providers = data.get("providers")
    if not isinstance(providers, dict):
        return data
    result = dict(providers)
    for name, entry in providers.items():
        if isinstance(entry, dict):
            result[name] = _named_entry(name, dict(entry), defaults, may_be_local)
    return {**data, "providers": result}


def _named_entry(name: str, entry: dict[str, Any], defaults: bool,
                 may_be_local: bool) -> dict[str, Any]:
    if defaults and "type" not in entry and name not in NAMED_PROVIDERS \
            and entry.get("modelPath") and not _is_known_type(name):
        entry["type"] = _model_path_kind()  # agentic-flow's `onnx-local: {"modelPath": ...}`
    preset = named_provider(name, entry)
    if preset is None:
        return entry
    if name == "ollama":
        if isinstance(entry.get("baseUrl"), str) and entry["baseUrl"]:
            entry["baseUrl"] = _with_v1(entry["baseUrl"])
        if isinstance(entry.get("baseUrls"), list):
            entry["baseUrls"] = [_with_v1(url) if isinstance(url, str) else url
                                 for url in entry["baseUrls"]]
    if not defaults:
        return entry
    entry.setdefault("type", preset.kind)
    if not entry.get("baseUrl") and not entry.get("baseUrls"):
        entry["baseUrl"] = preset.base_url
    if may_be_local and preset.local and "local" not in entry:
        urls = entry.get("baseUrls") or [entry.get("baseUrl")]
        entry["local"] = all(isinstance(url, str) and is_loopback_url(url) for url in urls)
    return entry


def _is_known_type(name: str) -> bool:
    return name in provider_kinds()


def _model_path_kind() -> str:
    """The kind that acts on agentic-flow's `modelPath` (a local model file): onnx."""
    return next(kind for kind in provider_kinds()
                if "modelPath" in provider_class(kind).entry_keys)


def _with_v1(url: str) -> str:
    """Ollama's OpenAI-compatible API lives under /v1; agentic-flow names the bare server."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.path.strip("/"):
        return url
    return urlunsplit((parts.scheme, parts.netloc, "/v1", parts.query, parts.fragment))


def model_path_folder(model_path: str) -> str:
    """agentic-flow's `modelPath` names the .onnx file; onnxruntime-genai wants its folder."""
    if model_path.lower().endswith(".onnx"):
        parent = model_path.replace("\\", "/").rpartition("/")[0]
        return parent or "."
    return model_path


# ---------------------------------------------------------------------------------------------
# Keys accepted from agentic-flow's config and not acted on yet

_TOP_LEVEL = (("toolCalling", "tool_calling"), ("monitoring", "monitoring"))
# routing.performance's keys router/deployments.py acts on; the others are listed.
_PERFORMANCE_KEYS = ("circuitBreaker",)
# routing.costOptimization's keys that router/spend_limits.py acts on; the others are listed.
_COST_KEYS = ("enabled", "maxCostPerRequest", "budgetAlerts", "budgetLimits")
_PROVIDER = (("gpuLayers", "gpu_layers"),
             ("contextWindow", "context_window"), ("localInference", "local_inference"))
# Keys some kinds act on (their class's `entry_keys`), unused by the others when present.
_KIND_KEYS = (("organization", lambda entry: bool(entry.organization)),
              ("preferences", lambda entry: entry.preferences is not None),
              ("modelPath", lambda entry: bool(entry.model_path)))


def unused_keys(config: Any) -> list[str]:
    """The agentic-flow keys present in `config` that change nothing yet, in file order."""
    found: list[str] = []
    for name in config.providers:
        entry, acted_on = config.entry(name), config.provider_class(name).entry_keys
        found += [key for key, field in _PROVIDER if getattr(entry, field) is not None]
        found += [key for key, present in _KIND_KEYS if present(entry) and key not in acted_on]
    cost = config.routing.cost_optimization
    if cost is not None:
        found += [f"routing.costOptimization.{key}" for key in (cost if isinstance(cost, dict)
                                                                else {}) if key not in _COST_KEYS]
    performance = config.routing.performance
    if isinstance(performance, dict):
        found += [f"routing.performance.{key}" for key in performance
                  if key not in _PERFORMANCE_KEYS]
    found += [key for key, field in _TOP_LEVEL if getattr(config, field) is not None]
    return list(dict.fromkeys(found))


def unused_keys_warning(config: Any) -> str | None:
    keys = unused_keys(config)
    if not keys:
        return None
    return (f"Accepted from agentic-flow's config and not used yet: {', '.join(keys)} "
            f"(see {DOCS}).")
