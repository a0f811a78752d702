"""The router config: the seed's JSON schema, found, substituted, validated.

Lookup order (first that exists wins): `--config PATH`, `$AGENTIC_FLOW_CONFIG`,
`./agentic-flow.json`, `~/.agentic-flow/config.json` (under `$AGENTIC_FLOW_HOME`). With no
file, defaults come from the environment: onnx always, anthropic / openrouter when their key
variable is set. String values may say `${VAR}` or `${VAR:-default}`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal, Optional, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentic_onnx.core.paths import home_dir
from agentic_onnx.router.errors import ConfigError
from agentic_onnx.router.secrets import register_secret
from agentic_onnx.router.substitution import REFERENCE, join_path, substitute

CONFIG_ENV_VAR = "AGENTIC_FLOW_CONFIG"
LOCAL_CONFIG_NAME = "agentic-flow.json"
PROVIDER_TYPES = ("onnx", "anthropic", "openrouter", "openai")
KEY_ENV_VARS = {"anthropic": "ANTHROPIC_API_KEY", "openrouter": "OPENROUTER_API_KEY"}
DEFAULT_BASE_URLS = {
    "anthropic": "https://api.anthropic.com",
    "openrouter": "https://openrouter.ai/api/v1",
}
DEFAULT_MODELS = {
    "onnx": {},
    "anthropic": {"default": "claude-sonnet-4-5", "fast": "claude-haiku-4-5",
                  "advanced": "claude-opus-4-1"},
    "openrouter": {"default": "anthropic/claude-sonnet-4.5",
                   "fast": "meta-llama/llama-3.1-8b-instruct",
                   "advanced": "anthropic/claude-opus-4.1"},
    "openai": {},
}
ROUTING_MODES = ("rule-based", "cost-optimized", "performance-optimized", "quality-optimized",
                 "manual")

Privacy = Literal["high", "normal"]
Complexity = Literal["low", "medium", "high"]
_STRICT = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Price(BaseModel):
    """USD per million tokens."""

    model_config = _STRICT
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class ProviderConfig(BaseModel):
    """One entry of `providers`. `type` defaults to the entry's name when that is a known type,
    so several OpenAI-compatible servers can sit side by side under their own names."""

    model_config = _STRICT
    type: Optional[Literal["onnx", "anthropic", "openrouter", "openai"]] = None
    api_key: Optional[str] = Field(None, alias="apiKey", repr=False)
    base_url: Optional[str] = Field(None, alias="baseUrl")
    base_urls: Optional[list[str]] = Field(None, alias="baseUrls", min_length=1)
    models: dict[str, str] = Field(default_factory=dict)
    timeout: int = Field(60_000, ge=1, le=3_600_000, description="Milliseconds (as the seed).")
    max_retries: int = Field(2, alias="maxRetries", ge=0, le=10)
    local: bool = Field(False, description="openai only: a server on this machine (loopback).")
    headers: dict[str, str] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    # The seed's onnx keys. executionProviders/threads are used; the others are accepted so that
    # seed configs validate, and do nothing: onnxruntime-genai reads them from genai_config.json.
    execution_providers: Optional[list[str]] = Field(None, alias="executionProviders")
    threads: Optional[int] = Field(None, ge=1, le=1024)
    graph_optimization_level: Optional[str] = Field(None, alias="graphOptimizationLevel")
    enable_memory_optimization: Optional[bool] = Field(None, alias="enableMemoryOptimization")
    cuda_options: Optional[dict[str, Any]] = Field(None, alias="cudaOptions")

    def urls(self, kind: str) -> list[str]:
        """The base URLs to send to, in order."""
        if self.base_urls:
            return list(self.base_urls)
        if self.base_url:
            return [self.base_url]
        default = DEFAULT_BASE_URLS.get(kind)
        return [default] if default else []


class Condition(BaseModel):
    """Every key present must match (AND); an empty condition matches everything."""

    model_config = _STRICT
    privacy: Optional[Privacy] = None
    local_only: Optional[bool] = Field(None, alias="localOnly")
    agent_type: Optional[list[str]] = Field(None, alias="agentType")
    complexity: Optional[Union[Complexity, list[Complexity]]] = None
    requires_tools: Optional[bool] = Field(None, alias="requiresTools")

    @model_validator(mode="before")
    @classmethod
    def _agent_type_as_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("agentType"), str):
            return {**data, "agentType": [data["agentType"]]}
        return data


class Action(BaseModel):
    """What a matching rule does. `privacy`/`localOnly` make the request private."""

    model_config = _STRICT
    provider: Optional[str] = None
    model: Optional[str] = None
    temperature: Optional[float] = Field(None, ge=0.0, le=5.0)
    max_tokens: Optional[int] = Field(None, alias="maxTokens", ge=1, le=1_000_000)
    privacy: Optional[Privacy] = None
    local_only: Optional[bool] = Field(None, alias="localOnly")


class Rule(BaseModel):
    model_config = _STRICT
    condition: Condition = Field(default_factory=Condition)
    action: Action
    reason: Optional[str] = None


class Routing(BaseModel):
    model_config = _STRICT
    mode: Literal["rule-based", "cost-optimized", "performance-optimized", "quality-optimized",
                  "manual"] = "rule-based"
    rules: list[Rule] = Field(default_factory=list)


class RetryConfig(BaseModel):
    """Backoff between retries of one provider: min(maxDelay, base * 2^n) plus up to 50% jitter;
    a `retry-after` is honoured up to `maxRetryAfterMs` (longer: move on to the next provider)."""

    model_config = _STRICT
    base_delay_ms: int = Field(500, alias="baseDelayMs", ge=0, le=60_000)
    max_delay_ms: int = Field(8_000, alias="maxDelayMs", ge=0, le=300_000)
    max_retry_after_ms: int = Field(30_000, alias="maxRetryAfterMs", ge=0, le=600_000)


class RouterConfig(BaseModel):
    model_config = _STRICT
    version: str = "1.0"
    default_provider: str = Field("onnx", alias="defaultProvider")
    fallback_chain: list[str] = Field(default_factory=list, alias="fallbackChain")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routing: Routing = Field(default_factory=Routing)
    privacy: Privacy = "normal"
    local_only: bool = Field(False, alias="localOnly")
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @model_validator(mode="after")
    def _check_references(self) -> RouterConfig:
        for name, entry in self.providers.items():
            _check_provider(name, entry)
        known = set(self.providers) | {"onnx"}
        _check_known(self.default_provider, known, "defaultProvider")
        for index, name in enumerate(self.fallback_chain):
            _check_known(name, known, f"fallbackChain[{index}]")
        for index, rule in enumerate(self.routing.rules):
            if rule.action.provider is not None:
                _check_known(rule.action.provider, known,
                             f"routing.rules[{index}].action.provider")
        return self

    def kind_of(self, name: str) -> str:
        """The provider type of entry `name`."""
        return provider_kind(name, self.providers.get(name))

    def entry(self, name: str) -> ProviderConfig:
        return self.providers.get(name) or ProviderConfig()

    def provider_names(self) -> list[str]:
        """Configured providers in file order, onnx always among them."""
        names = list(self.providers)
        return names if "onnx" in names else ["onnx", *names]


def provider_kind(name: str, entry: ProviderConfig | None) -> str:
    if entry is not None and entry.type:
        return entry.type
    return name if name in PROVIDER_TYPES else "openai"


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or `localhost`."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _check_provider(name: str, entry: ProviderConfig) -> None:
    kind = provider_kind(name, entry)
    if entry.type is None and name not in PROVIDER_TYPES:
        raise ValueError(f"providers.{name}.type: expected one of {', '.join(PROVIDER_TYPES)} "
                         f"(needed because {name!r} is not a provider type)")
    if kind == "openai" and not entry.urls(kind):
        raise ValueError(f"providers.{name}.baseUrl: an openai-compatible provider needs "
                         "baseUrl or baseUrls")
    if entry.local and kind != "openai":
        raise ValueError(f"providers.{name}.local: only openai-compatible providers can be "
                         "marked local")
    if entry.local and not all(is_loopback_url(url) for url in entry.urls(kind)):
        raise ValueError(f"providers.{name}.local: every base URL of a local provider must be "
                         "on a loopback address (127.0.0.1, ::1, localhost)")


def _check_known(name: str, known: set[str], path: str) -> None:
    if name not in known:
        raise ValueError(f"{path}: expected a configured provider ({', '.join(sorted(known))}), "
                         f"got {name!r}")


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class LoadedConfig:
    """A validated config, where it came from, and which variable each provider's key names."""

    config: RouterConfig
    path: Path | None
    key_env_vars: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def api_key(self, name: str) -> str | None:
        """The key of provider `name`: config `apiKey` (after substitution), else its variable."""
        entry = self.config.entry(name)
        if entry.api_key:
            return entry.api_key
        variable = self.key_env_vars.get(name)
        return os.environ.get(variable) or None if variable else None


def search_paths(explicit: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """Where a config may be, in lookup order, each with the reason it is looked at."""
    candidates: list[tuple[str, Path]] = []
    if explicit:
        candidates.append(("--config", Path(explicit).expanduser()))
    env_value = os.environ.get(CONFIG_ENV_VAR)
    if env_value:
        candidates.append((f"${CONFIG_ENV_VAR}", Path(env_value).expanduser()))
    candidates.append(("current directory", Path.cwd() / LOCAL_CONFIG_NAME))
    candidates.append(("home", home_dir() / "config.json"))
    return candidates


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use; an explicit or `$AGENTIC_FLOW_CONFIG` path must exist."""
    for source, path in search_paths(explicit):
        if path.is_file():
            return path
        if source in ("--config", f"${CONFIG_ENV_VAR}"):
            raise ConfigError(f"Config file {str(path)!r} (from {source}) does not exist.",
                              "Check the path, or run `agentic-onnx config path` to see the "
                              "lookup order.")
    return None


def load_config(explicit: str | os.PathLike[str] | None = None) -> LoadedConfig:
    """Find, read, substitute and validate the config (or build the defaults)."""
    path = find_config(explicit)
    raw = _read_json(path) if path else default_config_data()
    return parse_config(raw, path)


def parse_config(raw: Any, path: Path | None = None) -> LoadedConfig:
    where = str(path) if path else "the default config"
    if not isinstance(raw, dict):
        raise ConfigError(f"Invalid config {where}: expected a JSON object at the top level.",
                          "See docs/router.md for the schema.")
    data, unset = substitute(raw)
    for json_path, variable in unset:
        if not re.fullmatch(r"providers\.[^.]+\.apiKey", json_path):
            raise ConfigError(
                f"Invalid config {where} at {json_path}: ${{{variable}}} is not set.",
                f"Set {variable}, or write ${{{variable}:-default}} in the file.")
    try:
        config = RouterConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, where), "See docs/router.md for the schema, or run "
                          "`agentic-onnx config validate`.") from None
    loaded = LoadedConfig(config, path, _key_env_vars(raw, config), raw)
    for name in config.provider_names():
        register_secret(loaded.api_key(name))
    return loaded


def default_config_data() -> dict[str, Any]:
    """No file: onnx always, each cloud provider whose key variable is set."""
    providers: dict[str, Any] = {"onnx": {}}
    for name, variable in KEY_ENV_VARS.items():
        if os.environ.get(variable):
            providers[name] = {"apiKey": f"${{{variable}}}"}
    return {"version": "1.0", "defaultProvider": "onnx", "providers": providers}


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"Cannot read config {str(path)!r}: {error.strerror}.",
                          "Check the file's permissions.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"Invalid config {path}: not valid JSON at line {error.lineno} column {error.colno} "
            f"({error.msg}).", "Fix the JSON syntax (a trailing comma or a missing quote?).",
        ) from None


def _key_env_vars(raw: dict[str, Any], config: RouterConfig) -> dict[str, str]:
    """For each provider: the variable its key comes from (a `${VAR}` in apiKey, else the
    provider type's standard variable), so a missing key names what to set."""
    result: dict[str, str] = {}
    raw_providers = raw.get("providers") or {}
    for name in config.provider_names():
        raw_key = (raw_providers.get(name) or {}).get("apiKey")
        match = REFERENCE.search(raw_key) if isinstance(raw_key, str) else None
        if match:
            result[name] = match.group(1)
        elif config.kind_of(name) in KEY_ENV_VARS:
            result[name] = KEY_ENV_VARS[config.kind_of(name)]
    return result


def _describe(error: ValidationError, where: str) -> str:
    """The first problem as `file at json.path: what was expected (got X)`."""
    first = error.errors()[0]
    path = _json_path(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    if first["type"] == "value_error":
        # Our own validators put the JSON path first: "path: what was expected".
        own_path, _, expectation = message.partition(": ")
        return f"Invalid config {where} at {own_path}: {expectation}."
    if first["type"] == "extra_forbidden":
        return f"Invalid config {where} at {path}: unknown key (check its spelling)."
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    return f"Invalid config {where} at {path or 'the top level'}: {message}{shown}."


def _json_path(loc: tuple[Any, ...]) -> str:
    parts = ""
    for item in loc:
        if isinstance(item, int):
            parts += f"[{item}]"
        elif str(item).startswith(("literal[", "list[", "function-")):
            continue  # pydantic's union branch labels are not part of the JSON path
        else:
            parts = join_path(parts, str(item))
    return parts


def redacted(loaded: LoadedConfig) -> dict[str, Any]:
    """The effective config as JSON, with every key replaced by its variable reference or ***."""
    data = loaded.config.model_dump(by_alias=True, exclude_none=True)
    for name, entry in data.get("providers", {}).items():
        if loaded.config.kind_of(name) != "openai":
            entry.pop("local", None)  # only meaningful for openai-compatible endpoints
        if "apiKey" in entry:
            variable = loaded.key_env_vars.get(name)
            raw_key = ((loaded.raw.get("providers") or {}).get(name) or {}).get("apiKey", "")
            is_reference = isinstance(raw_key, str) and REFERENCE.fullmatch(raw_key.strip())
            entry["apiKey"] = f"${{{variable}}}" if is_reference and variable else "***"
    return data
