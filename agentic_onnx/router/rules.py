"""Routing decisions: which provider and model answer a request, in what fallback order, and why.

Pure functions of the config and the request's facts (no network, no model loading), so
`router explain`, `run --dry-run` and `run` decide identically.

Order of precedence:
1. Privacy. A request is private when `--privacy high`, `--local-only`, the config's top-level
   `privacy: "high"` / `localOnly: true`, or ANY matching rule whose action sets them. (Privacy
   is the one exception to first-match-wins: a guarantee must not depend on rule order.) A
   private request's candidates are local providers only; a cloud choice is replaced by the
   first local one, and `--provider <cloud>` is refused.
2. `--provider` (and a `--model` that is a folder on disk, which implies onnx): that provider
   only, no fallback: you named it.
3. The routing mode: `rule-based` (first matching rule's action, else `defaultProvider`, then
   `fallbackChain`), `manual` (`defaultProvider` only: no rules, no fallback), and the three
   optimised modes, which order every usable provider by price (`cost-optimized`), by the
   usage log's median latency (`performance-optimized`) or by the price table's quality tier
   (`quality-optimized`).
4. Tools. A request that needs tool calling (`requiresTools`) drops candidates whose kind cannot
   call tools (`supports_tools`), unless none other is left, and puts local onnx candidates
   whose model the catalog does not mark `tools` behind the other candidates (they can still
   call tools, by constrained decoding, but with less skill); unknown models keep their place.

Every fact about a provider (local, key, tools, default models, price table) comes from its
kind's class flags (provider_kinds.py), never from the kind's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentic_onnx.core.errors import UsageError
from agentic_onnx.router.complexity import estimate_complexity
from agentic_onnx.router.config import Action, Condition, Rule, RouterConfig
from agentic_onnx.router.provider_kinds import price_kind
from agentic_onnx.router.costs import lookup_price


@dataclass(frozen=True)
class RouteFlags:
    """What the caller said about the request (CLI flags or library arguments)."""

    provider: str | None = None
    model: str | None = None
    agent: str | None = None
    privacy: str | None = None
    local_only: bool = False
    complexity: str | None = None
    requires_tools: bool = False


@dataclass(frozen=True)
class Candidate:
    provider: str
    model: str | None
    local: bool

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "local": self.local}


@dataclass
class Decision:
    provider: str
    model: str | None
    rule: str
    reason: str
    candidates: list[Candidate]
    private: bool
    privacy_source: str | None
    complexity: str
    complexity_source: str
    mode: str
    temperature: float | None = None
    max_tokens: int | None = None
    excluded: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "reason": self.reason, "provider": self.provider,
            "model": self.model, "mode": self.mode, "private": self.private,
            "privacy_source": self.privacy_source, "complexity": self.complexity,
            "complexity_source": self.complexity_source,
            "temperature": self.temperature, "max_tokens": self.max_tokens,
            "candidates": [candidate.to_json() for candidate in self.candidates],
            "excluded": [{"provider": name, "why": why} for name, why in self.excluded],
        }


@dataclass(frozen=True)
class RouteContext:
    """Facts about the environment the decision needs: which providers can be used at all (key
    set, local model configured) and the median latency per provider from the usage log."""

    usable: Callable[[str], bool] = lambda name: True
    latency_ms: Mapping[str, float] = field(default_factory=dict)


def is_local(config: RouterConfig, name: str) -> bool:
    """A kind that runs on this machine (onnx) always; one an entry may mark local (openai) when
    it, or one of its deployments, is marked (config checks those URLs are loopback or trusted):
    a private request then goes to the local deployments only (router/deployments.py)."""
    flags = config.provider_class(name)
    return flags.local or (flags.can_be_marked_local and any(config.entry(name).marked_local()))


def model_for(config: RouterConfig, name: str, requested: str | None) -> str | None:
    """A provider's concrete model: an alias from its `models`, else `requested` as given, else
    its `default` (config first, then our defaults for that provider type)."""
    models = {**config.provider_class(name).default_models, **config.entry(name).models}
    if requested:
        return models.get(requested, requested)
    return models.get("default")


def matches(condition: Condition, facts: dict[str, Any]) -> bool:
    """Every key present in the condition must hold for the request (AND)."""
    if condition.privacy is not None and condition.privacy != facts["privacy"]:
        return False
    if condition.local_only is not None and condition.local_only != facts["local_only"]:
        return False
    if condition.agent_type is not None and facts["agent"] not in condition.agent_type:
        return False
    if condition.complexity is not None:
        allowed = ([condition.complexity] if isinstance(condition.complexity, str)
                   else condition.complexity)
        if facts["complexity"] not in allowed:
            return False
    if condition.requires_tools is not None and condition.requires_tools != facts["tools"]:
        return False
    return True


def decide(config: RouterConfig, flags: RouteFlags, task: str,
           context: RouteContext | None = None) -> Decision:
    """Choose provider, model and fallback order for one request; explain why."""
    context = context or RouteContext()
    complexity, complexity_source = _complexity(flags, task)
    facts = {
        "privacy": "high" if flags.privacy == "high" else "normal",
        "local_only": flags.local_only, "agent": flags.agent, "complexity": complexity,
        "tools": flags.requires_tools,
    }
    matched = [(index, rule) for index, rule in enumerate(config.routing.rules)
               if matches(rule.condition, facts)]
    privacy_source = _privacy_source(config, flags, matched)
    decision = Decision(provider="", model=None, rule="", reason="", candidates=[],
                        private=privacy_source is not None, privacy_source=privacy_source,
                        complexity=complexity, complexity_source=complexity_source,
                        mode=config.routing.mode)
    explicit = _explicit_provider(config, flags)
    if explicit is not None:
        _choose_explicit(decision, config, flags, *explicit)
    elif config.routing.mode == "manual":
        _choose(decision, config, config.default_provider, flags.model, "defaultProvider",
                "routing mode manual: the default provider, no rules, no fallback")
        decision.candidates = decision.candidates[:1]
    elif config.routing.mode == "rule-based":
        _choose_by_rules(decision, config, flags, matched)
    else:
        _choose_by_metric(decision, config, flags, context)
    if decision.private:
        _keep_local_only(decision, config, flags)
    if flags.requires_tools and explicit is None:
        _prefer_tool_capable(decision, config)
    return decision


def tool_capability(model: str | None) -> bool | None:
    """The catalog's word on a local model's tool calling: True or False for a catalog id or
    family (every variant must have `tools`), None when the catalog does not know the model."""
    if not model:
        return None
    from agentic_onnx.core.models.catalog import load_catalog

    catalog = load_catalog()
    entry = catalog.get(model)
    entries = [entry] if entry is not None else catalog.family(model)
    if not entries:
        return None
    return all("tools" in variant.capabilities for variant in entries)


def _prefer_tool_capable(decision: Decision, config: RouterConfig) -> None:
    """A kind that cannot call tools is dropped (unless nothing else is left); local models the
    catalog does not mark `tools` go behind the other candidates."""
    unable = [c for c in decision.candidates
              if not config.provider_class(c.provider).supports_tools]
    if unable and len(unable) < len(decision.candidates):
        first = decision.candidates[0]
        decision.excluded += [(c.provider, "cannot call tools; the request needs tools")
                              for c in unable]
        decision.candidates = [c for c in decision.candidates if c not in unable]
        _first_changed(decision, first, f"{first.provider} cannot call tools")
    weak = [c for c in decision.candidates if config.provider_class(c.provider).catalog_models
            and tool_capability(c.model) is False]
    if not weak or len(weak) == len(decision.candidates):
        return
    first = decision.candidates[0]
    decision.candidates = [c for c in decision.candidates if c not in weak] + weak
    _first_changed(decision, first,
                   f"the catalog does not mark {first.model} as tool-capable")


def _first_changed(decision: Decision, first: Candidate, why: str) -> None:
    if decision.candidates[0] != first:
        chosen = decision.candidates[0]
        decision.reason += (f"; the request needs tools and {why}, so {chosen.provider} "
                            "answers first")
        decision.provider, decision.model = chosen.provider, chosen.model


def _complexity(flags: RouteFlags, task: str) -> tuple[str, str]:
    if flags.complexity:
        if flags.complexity not in ("low", "medium", "high"):
            raise UsageError(f"Invalid value for --complexity: {flags.complexity!r}.",
                             "Use low, medium or high.")
        return flags.complexity, "--complexity"
    estimate = estimate_complexity(task)
    return estimate.level, f"estimated ({estimate.reason})"


def _privacy_source(config: RouterConfig, flags: RouteFlags,
                    matched: list[tuple[int, Rule]]) -> str | None:
    if flags.privacy not in (None, "high", "normal"):
        raise UsageError(f"Invalid value for --privacy: {flags.privacy!r}.", "Use high or normal.")
    if flags.privacy == "high":
        return "--privacy high"
    if flags.local_only:
        return "--local-only"
    if config.privacy == "high":
        return "config privacy: high"
    if config.local_only:
        return "config localOnly: true"
    for index, rule in matched:
        if rule.action.privacy == "high" or rule.action.local_only:
            return f"routing.rules[{index}]"
    return None


def _explicit_provider(config: RouterConfig, flags: RouteFlags) -> tuple[str, str] | None:
    if flags.provider:
        return flags.provider.strip(), "--provider"
    if flags.model and Path(flags.model).expanduser().is_dir():
        return "onnx", "--model (a local folder)"
    return None


def refuse_private_to_cloud(config: RouterConfig, decision: Decision, name: str,
                            what: str = "request") -> None:
    """A provider named explicitly (`--provider`) that is not local, for a private request: the
    two contradict each other, so it is a usage error (exit 2) before anything is sent. Chat and
    embeddings refuse it the same way."""
    if decision.private and not is_local(config, name):
        raise UsageError(
            f"--provider {name} is a cloud provider, but this {what} is private "
            f"({decision.privacy_source}); nothing was sent.",
            "Use a local provider (onnx, or an openai endpoint marked local), or drop the "
            "privacy setting.")


def _choose_explicit(decision: Decision, config: RouterConfig, flags: RouteFlags, name: str,
                     source: str) -> None:
    known = config.known_names()
    if name not in known:
        raise UsageError(f"Unknown provider {name!r}.",
                         f"Use one of: {', '.join(known)} (or add it to the config's providers).")
    refuse_private_to_cloud(config, decision, name)
    reason = ("a --model that is a folder on disk is a local onnx model"
              if source.startswith("--model") else f"chosen with --provider {name}")
    _choose(decision, config, name, flags.model, source, reason)
    decision.candidates = decision.candidates[:1]


def _choose_by_rules(decision: Decision, config: RouterConfig, flags: RouteFlags,
                     matched: list[tuple[int, Rule]]) -> None:
    if not matched:
        _choose(decision, config, config.default_provider, flags.model, "defaultProvider",
                "no rule matched: the default provider")
        return
    index, rule = matched[0]
    action: Action = rule.action
    name = action.provider or config.default_provider
    reason = rule.reason or f"condition {_describe_condition(rule.condition)} matched"
    _choose(decision, config, name, flags.model or action.model, f"routing.rules[{index}]", reason)
    decision.temperature, decision.max_tokens = action.temperature, action.max_tokens


def _choose_by_metric(decision: Decision, config: RouterConfig, flags: RouteFlags,
                      context: RouteContext) -> None:
    names = [name for name in config.provider_names() if context.usable(name)]
    if not names:
        names = [config.default_provider]
    ranked = sorted(names, key=lambda name: _metric(config, name, decision.mode, context))
    best = ranked[0]
    reason = {
        "cost-optimized": "the cheapest usable provider (price table, local is free)",
        "performance-optimized": "the fastest usable provider (median latency in the usage log)",
        "quality-optimized": "the highest quality tier among usable providers (price table)",
    }[decision.mode]
    _choose(decision, config, best, flags.model, f"mode {decision.mode}", reason, chain=ranked)


def _metric(config: RouterConfig, name: str, mode: str, context: RouteContext) -> tuple:
    order = config.provider_names().index(name)
    price = lookup_price(price_kind(config.kind_of(name)), model_for(config, name, None) or "",
                         local=is_local(config, name))
    if mode == "cost-optimized":
        return (price is None, price.blended if price else 0.0, order)
    if mode == "quality-optimized":
        return (-(price.quality if price else 0), order)
    latency = context.latency_ms.get(name)
    return (latency is None, latency or 0.0, order)


def _choose(decision: Decision, config: RouterConfig, name: str, model: str | None, rule: str,
            reason: str, chain: list[str] | None = None) -> None:
    """Set the chosen provider and build the candidates: it, then the fallback chain."""
    decision.provider, decision.rule, decision.reason = name, rule, reason
    decision.model = model_for(config, name, model)
    order = [name] + [other for other in (chain or config.fallback_chain) if other != name]
    decision.candidates = [
        Candidate(other, decision.model if other == name else model_for(config, other, None),
                  is_local(config, other))
        for other in dict.fromkeys(order)
    ]


def _keep_local_only(decision: Decision, config: RouterConfig, flags: RouteFlags) -> None:
    """The privacy filter: drop every cloud candidate; add the configured local providers."""
    kept = [candidate for candidate in decision.candidates if candidate.local]
    decision.excluded += [(candidate.provider, f"cloud provider; request is private "
                           f"({decision.privacy_source})")
                          for candidate in decision.candidates if not candidate.local]
    if decision.mode != "manual" or not kept:
        present = {candidate.provider for candidate in kept}
        kept += [Candidate(name, model_for(config, name, None), True)
                 for name in config.provider_names()
                 if is_local(config, name) and name not in present]
    if kept and kept[0].provider != decision.provider:
        first = kept[0]
        if flags.model and config.provider_class(first.provider).catalog_models:
            first = Candidate(first.provider, model_for(config, first.provider, flags.model),
                              True)
            kept[0] = first
        decision.reason = (f"private request ({decision.privacy_source}): {decision.provider} "
                           f"is a cloud provider, so the local {first.provider} answers")
        decision.rule = "privacy"
        decision.provider, decision.model = first.provider, first.model
    decision.candidates = kept


def _describe_condition(condition: Condition) -> str:
    values = condition.model_dump(by_alias=True, exclude_none=True)
    return ", ".join(f"{key}={value}" for key, value in values.items()) or "(always)"
