"""The router config: the seed's JSON schema, substituted and validated into a `LoadedConfig`.

Which files are read, and how a trusted project file is layered on the user's own, is
config_lookup.py (`load_config`). With no file, defaults come from the environment: onnx
always, anthropic / openrouter when their key variable is set. String values may say `${VAR}`
or `${VAR:-default}`; every value that lands in a secret-bearing place (apiKey, headers, the
credentials of a URL) is registered for redaction.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agentic_onnx.router.config_compat import apply_named_providers, named_provider
from agentic_onnx.router.config_secrets import register_config_secrets, register_substituted
from agentic_onnx.router.errors import ConfigError
from agentic_onnx.router.provider_kinds import (
    is_trusted_url,
    kind_for,
    provider_class,
    provider_kinds,
)
from agentic_onnx.router.secrets import redact
from agentic_onnx.router.substitution import REFERENCE, join_path, substitute

if TYPE_CHECKING:
    from agentic_onnx.router.providers.base import Provider

ROUTING_MODES = ("rule-based", "cost-optimized", "performance-optimized", "quality-optimized",
                 "manual")

Privacy = Literal["high", "normal"]
Complexity = Literal["low", "medium", "high"]
_STRICT = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, allow_inf_nan=False)


class Price(BaseModel):
    """USD per million tokens."""

    model_config = _STRICT
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class LimitPerMinute(BaseModel):
    """Requests and tokens (prompt + completion) per minute, over a sliding 60-second window."""

    model_config = _STRICT
    requests_per_minute: Optional[int] = Field(None, alias="requestsPerMinute", ge=1)
    tokens_per_minute: Optional[int] = Field(None, alias="tokensPerMinute", ge=1)


class RateLimit(LimitPerMinute):
    """agentic-flow's `rateLimit`, plus how long a request may wait for room (`maxWaitMs`,
    default 0: move on in the chain at once) and limits per model (`models`)."""

    max_wait_ms: int = Field(0, alias="maxWaitMs", ge=0, le=600_000)
    models: dict[str, LimitPerMinute] = Field(default_factory=dict)


class Deployment(BaseModel):
    """One endpoint serving a provider's models (router/deployments.py balances them). `apiKey`
    and `headers` default to the entry's; `model` renames the model at this endpoint (Ollama's
    `llama3:8b` for vLLM's `meta-llama/Meta-Llama-3-8B-Instruct`)."""

    model_config = _STRICT
    base_url: str = Field(alias="baseUrl", min_length=1)
    api_key: Optional[str] = Field(None, alias="apiKey", repr=False)
    headers: Optional[dict[str, str]] = None
    local: Optional[bool] = None
    weight: float = Field(1.0, gt=0, le=1_000_000)
    model: Optional[str] = None
    rate_limit: Optional[LimitPerMinute] = Field(None, alias="rateLimit")



class ProviderConfig(BaseModel):
    """One entry of `providers`. `type` (a registered kind, provider_kinds.py) defaults to the
    entry's name when that is a kind, so several OpenAI-compatible servers can sit side by side
    under their own names."""

    model_config = _STRICT
    type: Optional[str] = None
    api_key: Optional[str] = Field(None, alias="apiKey", repr=False)
    base_url: Optional[str] = Field(None, alias="baseUrl")
    base_urls: Optional[list[str]] = Field(None, alias="baseUrls", min_length=1)
    deployments: Optional[list[Deployment]] = Field(None, min_length=1)
    strategy: Literal["least-outstanding", "latency-weighted", "simple-shuffle"] = \
        "least-outstanding"
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
    # agentic-flow's router.config.json keys (config_compat.py). Used: modelPath (onnx: the
    # default model), maxTokens / temperature / numPredict (defaults for this provider's
    # requests), retryDelay (ms, the base backoff), organization (openai: OpenAI-Organization),
    # preferences (openrouter: its `provider` field). Accepted, not used yet: the rest.
    model_path: Optional[str] = Field(None, alias="modelPath")
    max_tokens: Optional[int] = Field(None, alias="maxTokens", ge=1, le=1_000_000)
    temperature: Optional[float] = Field(None, ge=0.0, le=5.0)
    retry_delay: Optional[int] = Field(None, alias="retryDelay", ge=0, le=60_000)
    organization: Optional[str] = None
    preferences: Optional[dict[str, Any]] = None
    rate_limit: Optional[RateLimit] = Field(None, alias="rateLimit")
    num_predict: Optional[int] = Field(None, alias="numPredict", ge=1, le=1_000_000)
    gpu_layers: Optional[int] = Field(None, alias="gpuLayers")
    context_window: Optional[int] = Field(None, alias="contextWindow")
    local_inference: Optional[bool] = Field(None, alias="localInference")

    @field_validator("type", mode="before")
    @classmethod
    def _registered_kind(cls, value: Any) -> Any:
        kinds = provider_kinds()
        if value is None or (isinstance(value, str) and value in kinds):
            return value
        expected = " or ".join(filter(None, (", ".join(map(repr, kinds[:-1])), repr(kinds[-1]))))
        raise PydanticCustomError("literal_error", "Input should be {expected}",
                                  {"expected": expected})

    @model_validator(mode="before")
    @classmethod
    def _model_path_as_default(cls, data: Any) -> Any:
        """agentic-flow's `modelPath` is the default model unless `models.default` says one."""
        if isinstance(data, dict) and isinstance(data.get("modelPath"), str) \
                and data["modelPath"] and isinstance(data.get("models", {}), dict) \
                and not (data.get("models") or {}).get("default"):
            from agentic_onnx.router.config_compat import model_path_folder

            return {**data, "models": {**(data.get("models") or {}),
                                       "default": model_path_folder(data["modelPath"])}}
        return data

    def request_defaults(self) -> dict[str, Any]:
        """Generation options this entry sets for requests that did not choose them."""
        defaults: dict[str, Any] = {}
        if self.max_tokens is not None or self.num_predict is not None:
            defaults["max_tokens"] = self.max_tokens or self.num_predict
        if self.temperature is not None:
            defaults["temperature"] = self.temperature
        return defaults

    def marked_local(self) -> list[bool]:
        """Whether each URL (deployment) is marked local: its own `local`, else the entry's."""
        if not self.deployments:
            return [self.local] * len(self.base_urls or [self.base_url])
        return [self.local if d.local is None else d.local for d in self.deployments]

    def urls(self, kind: str) -> list[str]:
        """The base URLs to send to, in order (every deployment's)."""
        if self.deployments:
            return [deployment.base_url for deployment in self.deployments]
        if self.base_urls:
            return list(self.base_urls)
        if self.base_url:
            return [self.base_url]
        default = provider_class(kind).default_base_url
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
    # agentic-flow's; accepted, not used yet (config_compat.unused_keys).
    cost_optimization: Optional[dict[str, Any]] = Field(None, alias="costOptimization")
    performance: Optional[dict[str, Any]] = None


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
    # Addresses besides loopback where a `local` provider or deployment may be (private
    # requests may go there): IPs, networks (10.0.0.0/8) or host names. The user's file only.
    trusted_hosts: list[str] = Field(default_factory=list, alias="trustedHosts")
    # agentic-flow's; accepted, not used yet (config_compat.unused_keys).
    tool_calling: Optional[dict[str, Any]] = Field(None, alias="toolCalling")
    monitoring: Optional[dict[str, Any]] = None
    cache: Optional[dict[str, Any]] = None

    @model_validator(mode="after")
    def _check_references(self, info: ValidationInfo) -> RouterConfig:
        if info.context and info.context.get("partial"):
            return self  # a project file alone: it may name providers of the user's file
        for index, host in enumerate(self.trusted_hosts):
            _check_trusted_host(host, f"trustedHosts[{index}]")
        for name, entry in self.providers.items():
            _check_provider(name, entry, self.trusted_hosts)
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

    def provider_class(self, name: str) -> type[Provider]:
        """The class of entry `name`'s kind: the flags the router decides by."""
        return provider_class(self.kind_of(name))

    def entry(self, name: str) -> ProviderConfig:
        return self.providers.get(name) or ProviderConfig()

    def provider_names(self) -> list[str]:
        """Configured providers in file order, onnx always among them."""
        names = list(self.providers)
        return names if "onnx" in names else ["onnx", *names]

    def known_names(self) -> list[str]:
        """What `--provider` accepts: the configured providers, then each kind that works
        under its own name without an entry (one that needs no baseUrl)."""
        return list(dict.fromkeys(self.provider_names() + [
            kind for kind in provider_kinds() if not provider_class(kind).needs_base_url]))


def provider_kind(name: str, entry: ProviderConfig | None) -> str:
    return kind_for(name, entry.type if entry is not None else None)


def _check_trusted_host(host: str, path: str) -> None:
    from ipaddress import ip_network

    try:
        ip_network(host.strip("[]"), strict=False)
        return
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", host):
        raise ValueError(f"{path}: expected an IP address, a network (10.0.0.0/8) or a host "
                         f"name, got {host!r}")


def _check_provider(name: str, entry: ProviderConfig, trusted_hosts: list[str]) -> None:
    kind = provider_kind(name, entry)
    if entry.type is None and name not in provider_kinds():
        raise ValueError(f"providers.{name}.type: expected one of {', '.join(provider_kinds())} "
                         f"(needed because {name!r} is not a provider type)")
    flags = provider_class(kind)
    if flags.needs_base_url and not entry.urls(kind):
        raise ValueError(f"providers.{name}.baseUrl: an openai-compatible provider needs "
                         "baseUrl or baseUrls")
    if any(entry.marked_local()) and not flags.can_be_marked_local:
        raise ValueError(f"providers.{name}.local: only openai-compatible providers can be "
                         "marked local")
    if entry.deployments and entry.base_urls:
        raise ValueError(f"providers.{name}.deployments: give deployments or baseUrls, not both")
    if entry.deployments and not flags.can_be_marked_local:
        raise ValueError(f"providers.{name}.deployments: only openai-compatible providers "
                         "take deployments")
    for index, (url, local) in enumerate(zip(entry.urls(kind), entry.marked_local())):
        if local and not is_trusted_url(url, trusted_hosts):
            where = f"deployments[{index}].local" if entry.deployments else "local"
            raise ValueError(f"providers.{name}.{where}: a local endpoint must be on a loopback "
                             "address (127.0.0.1, ::1, localhost) or a host in trustedHosts, "
                             f"not {url}")


def _check_known(name: str, known: set[str], path: str) -> None:
    if name not in known:
        raise ValueError(f"{path}: expected a configured provider ({', '.join(sorted(known))}), "
                         f"got {name!r}")


# ---------------------------------------------------------------------------------------------
# From JSON data to a LoadedConfig


@dataclass
class LoadedConfig:
    """A validated config, the files it came from, and where each provider's key comes from.

    `path` is the user's own file (None: defaults from the environment); `project_path` a
    trusted project file layered on it. `keyless` names providers whose URLs only the project
    file gives: they get no key from the environment or the user's file. `warnings` are for
    the caller to show once (config_lookup.new_warnings)."""

    config: RouterConfig
    path: Path | None
    key_env_vars: dict[str, str] = field(default_factory=dict)
    project_path: Path | None = None
    keyless: frozenset[str] = frozenset()
    warnings: list[str] = field(default_factory=list)

    def api_key(self, name: str) -> str | None:
        """The key of provider `name`: config `apiKey` (after substitution), else its variable
        (never for a provider in `keyless`)."""
        entry = self.config.entry(name)
        if entry.api_key:
            return entry.api_key
        variable = self.key_env_vars.get(name)
        if name in self.keyless or not variable:
            return None
        return os.environ.get(variable) or None


def parse_config(raw: Any, path: Path | None = None) -> LoadedConfig:
    """Substitute and validate one config's JSON data (the user's file, or the defaults)."""
    where = str(path) if path else "the default config"
    data = apply_named_providers(substitute_config(raw, where))
    config = validate_config(data, where, taken_paths(raw))
    loaded = LoadedConfig(config, path, key_env_vars(raw, config))
    register_config_secrets(loaded)
    return loaded


def substitute_config(raw: Any, where: str, environ: Mapping[str, str] | None = None,
                      unset_hint: str | None = None) -> dict[str, Any]:
    """`raw` with `${VAR}` substituted; a ConfigError for an unset one outside an apiKey."""
    if not isinstance(raw, dict):
        raise ConfigError(f"Invalid config {where}: expected a JSON object at the top level.",
                          "See docs/router.md for the schema.")
    result = substitute(raw, environ)
    for json_path, variable in result.unset:
        # An unset key (or agentic-flow's organization) only matters when that provider is used.
        if not re.fullmatch(r"providers\.[^.]+\.((deployments\[\d+\]\.)?apiKey|organization)",
                            json_path):
            raise ConfigError(
                f"Invalid config {where} at {json_path}: ${{{variable}}} is not set.",
                unset_hint or f"Set {variable}, or write ${{{variable}:-default}} in the file.")
    register_substituted(result.data, result.taken)
    return result.data


def validate_config(data: dict[str, Any], where: str, hidden: frozenset[str] = frozenset(),
                    partial: bool = False) -> RouterConfig:
    """The schema check; `partial`: field checks only (a project file before layering).
    Values at `hidden` paths (substituted from a variable) are not echoed in the error."""
    try:
        return RouterConfig.model_validate(data, context={"partial": partial})
    except ValidationError as error:
        raise ConfigError(_describe(error, where, hidden), "See docs/router.md for the schema, "
                          "or run `agentic-onnx config validate`.") from None


def default_config_data() -> dict[str, Any]:
    """No file: onnx always, each cloud provider whose key variable is set."""
    providers: dict[str, Any] = {"onnx": {}}
    for kind in provider_kinds():
        variable = provider_class(kind).key_env_var
        if variable and os.environ.get(variable):
            providers[kind] = {"apiKey": f"${{{variable}}}"}
    return {"version": "1.0", "defaultProvider": "onnx", "providers": providers}


def key_env_vars(raw: dict[str, Any], config: RouterConfig) -> dict[str, str]:
    """For each provider: the variable its key comes from (a `${VAR}` in apiKey, else the
    provider type's standard variable), so a missing key names what to set."""
    result: dict[str, str] = {}
    raw_providers = raw.get("providers") if isinstance(raw.get("providers"), dict) else {}
    for name in config.provider_names():
        raw_entry = raw_providers.get(name)
        raw_key = raw_entry.get("apiKey") if isinstance(raw_entry, dict) else None
        match = REFERENCE.search(raw_key) if isinstance(raw_key, str) else None
        named = named_provider(name, config.entry(name))
        standard = config.provider_class(name).key_env_var
        if match:
            result[name] = match.group(1)
        elif standard:
            result[name] = standard
        elif named is not None and named.key_env_var:
            result[name] = named.key_env_var
    return result


def taken_paths(raw: Any) -> frozenset[str]:
    """JSON paths whose value holds a `${VAR}` reference (so an error never echoes it)."""
    return frozenset(path for path, _ in substitute(raw, _EveryVariable()).taken)


class _EveryVariable(dict):  # type: ignore[type-arg]
    """An environment in which every variable is set: reports every reference's path."""

    def get(self, key: Any, default: Any = None) -> Any:
        return "x"


def _describe(error: ValidationError, where: str, hidden: frozenset[str]) -> str:
    """The first problem as `file at json.path: what was expected (got X)`."""
    first = error.errors()[0]
    path = _json_path(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    if first["type"] == "value_error":
        # Our own validators put the JSON path first: "path: what was expected".
        own_path, _, expectation = message.partition(": ")
        return redact(f"Invalid config {where} at {own_path}: {expectation}.")
    if first["type"] == "extra_forbidden":
        return f"Invalid config {where} at {path}: unknown key (check its spelling)."
    shown = ""
    if path in hidden:
        shown = " (from a ${VAR} reference)"
    elif not isinstance(got, (dict, list)) and got is not None:
        text = repr(got)
        shown = f" (got {text[:60]}...)" if len(text) > 60 else f" (got {text})"
    return redact(f"Invalid config {where} at {path or 'the top level'}: {message}{shown}.")


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
