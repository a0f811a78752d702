"""A trusted project file (`./agentic-flow.json`) layered on the user's own config.

Trusting a file lets it shape routing for its project, never weaken the user:

- `privacy` / `localOnly` are the stricter of both files; the project's routing rules come
  first and the user's follow, so a user rule that makes a request private still matches;
- `defaultProvider`, `fallbackChain`, `routing.mode`, `retry`, `version`: the project's win;
- spend limits (`routing.costOptimization`): the lower of both files' limits, and a project
  cannot switch them off; a provider's `rateLimit` in the user's file stays;
- a provider entry is merged key by key (the project's win), except where keys travel: when the
  project gives a provider URLs the user's file does not (or, for a provider only it names,
  other than the vendor's own), that provider gets no key from the environment or the user's
  file, and no header from the user's file; only a literal `apiKey` in the project file;
- a project file cannot mark a provider or a deployment `local` (private requests may go there)
  that the user's file does not already mark local at the same URLs; nor add `trustedHosts`
  (a top-level key the project does not set).

Both inputs are substituted JSON data; the project's was substituted without the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentic_onnx.router.provider_kinds import FALLBACK_KIND

PRIVACY_KEYS = ("privacy", "localOnly")
PROJECT_WINS = ("version", "defaultProvider", "fallbackChain", "retry")


@dataclass
class Layered:
    data: dict[str, Any]
    keyless: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def layer_project(base: dict[str, Any], project: dict[str, Any], where: str,
                  default_urls: dict[str, str], provider_types: tuple[str, ...],
                  keyed_types: tuple[str, ...]) -> Layered:
    """`project` (from file `where`) on top of `base`. `default_urls`: each provider type's
    vendor URL; `provider_types`: the types an entry's name may imply; `keyed_types`: those
    whose key a standard variable holds."""
    layered = Layered({**base})
    data = layered.data
    for key in PROJECT_WINS:
        if key in project:
            data[key] = project[key]
    if "high" in (base.get("privacy"), project.get("privacy")):
        data["privacy"] = "high"
    if base.get("localOnly") or project.get("localOnly"):
        data["localOnly"] = True
    if project.get("trustedHosts"):
        layered.warnings.append(f"{where} sets trustedHosts; ignored: only your own config can "
                                "say where private requests may go.")
    data["routing"] = _routing(base.get("routing") or {}, project.get("routing") or {})
    providers = dict(base.get("providers") or {})
    entries = _ProviderUrls(default_urls, provider_types, keyed_types)
    for name, entry in (project.get("providers") or {}).items():
        providers[name] = _entry(name, providers.get(name), entry, entries, where, layered)
    data["providers"] = providers
    return layered


def _routing(base: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
    routing = {**base, **{key: value for key, value in project.items() if key != "rules"}}
    routing["rules"] = [*(project.get("rules") or []), *(base.get("rules") or [])]
    if isinstance(base.get("costOptimization"), dict):
        routing["costOptimization"] = _stricter_costs(base["costOptimization"],
                                                      project.get("costOptimization"))
    return routing


def _stricter_costs(base: dict[str, Any], project: Any) -> dict[str, Any]:
    """The user's spend limits, tightened (never loosened) by the project's: each limit is the
    lower of both; the project cannot switch them off."""
    if not isinstance(project, dict):
        return base
    merged = {**project, **base}
    # off only when both files say so: a project may turn limits on, never off
    merged["enabled"] = not (base.get("enabled") is False and project.get("enabled") is False)
    if _number(project.get("maxCostPerRequest")) and _number(base.get("maxCostPerRequest")):
        merged["maxCostPerRequest"] = min(project["maxCostPerRequest"],
                                          base["maxCostPerRequest"])
    for budgets in ("budgetAlerts", "budgetLimits"):
        ours, theirs = base.get(budgets), project.get(budgets)
        if isinstance(ours, dict) and isinstance(theirs, dict):
            merged[budgets] = {**theirs, **ours, **{
                period: min(theirs[period], ours[period]) for period in ("daily", "monthly")
                if _number(theirs.get(period)) and _number(ours.get(period))}}
    return merged


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class _ProviderUrls:
    default_urls: dict[str, str]
    provider_types: tuple[str, ...]
    keyed_types: tuple[str, ...]  # types with a standard key variable

    def of(self, name: str, entry: dict[str, Any]) -> list[str]:
        """The URLs requests to this entry go to (its own, else its type's vendor URL)."""
        if entry.get("deployments"):
            return [d.get("baseUrl") if isinstance(d, dict) else None
                    for d in entry["deployments"]]
        if entry.get("baseUrls"):
            return list(entry["baseUrls"])
        if entry.get("baseUrl"):
            return [entry["baseUrl"]]
        default = self.default_urls.get(self.kind(name, entry))
        return [default] if default else []

    def kind(self, name: str, entry: dict[str, Any]) -> str:
        return entry.get("type") or (name if name in self.provider_types else FALLBACK_KIND)

    def had_key(self, name: str, base: dict[str, Any] | None, merged: dict[str, Any]) -> bool:
        """Would this provider have had a key (or the user's headers) but for the project?"""
        if base and (base.get("apiKey") or base.get("headers")):
            return True
        return self.kind(name, merged) in self.keyed_types


def _entry(name: str, base: dict[str, Any] | None, project: dict[str, Any],
           urls: _ProviderUrls, where: str, layered: Layered) -> dict[str, Any]:
    merged = {**(base or {}), **project}
    approved = urls.of(name, base if base is not None else project | {"baseUrl": None,
                                                                       "baseUrls": None})
    introduced = urls.of(name, merged) != approved
    if introduced:
        merged["headers"] = dict(project.get("headers") or {})
        merged["apiKey"] = project.get("apiKey") or None
        if not merged["apiKey"]:
            layered.keyless.add(name)
            if urls.had_key(name, base, merged):
                layered.warnings.append(
                    f"{where} sends providers.{name} to {', '.join(urls.of(name, merged))}, "
                    "which your own config does not name: no API key from your environment "
                    "or config goes there (only an apiKey written in that file).")
    else:
        merged["headers"] = {**((base or {}).get("headers") or {}),
                             **(project.get("headers") or {})}
        if not project.get("apiKey") and base and base.get("apiKey"):
            merged["apiKey"] = base["apiKey"]
    user_local = bool(base and base.get("local")) and not introduced
    if project.get("local") and not user_local:
        layered.warnings.append(
            f"{where} marks providers.{name} local; ignored: only your own config can send "
            "private requests to a provider.")
    merged["local"] = user_local and project.get("local", True) is not False
    if base and base.get("rateLimit") and "rateLimit" in project:
        merged["rateLimit"] = base["rateLimit"]  # a project adds limits, never loosens yours
        if project["rateLimit"] != base["rateLimit"]:
            layered.warnings.append(f"{where} sets providers.{name}.rateLimit; ignored: your "
                                    "own config's rateLimit for it stays.")
    if isinstance(project.get("deployments"), list):
        merged["deployments"] = _project_deployments(name, project["deployments"],
                                                     _local_urls(name, base, urls), where,
                                                     layered)
    return merged


def _local_urls(name: str, base: dict[str, Any] | None, urls: _ProviderUrls) -> set[str]:
    """The URLs the user's own file marks local for provider `name`."""
    if not base:
        return set()
    if isinstance(base.get("deployments"), list):
        return {d.get("baseUrl") for d in base["deployments"] if isinstance(d, dict)
                and (d.get("local") if d.get("local") is not None else base.get("local"))}
    return set(urls.of(name, base)) if base.get("local") else set()


def _project_deployments(name: str, deployments: list[Any], user_local: set[str], where: str,
                         layered: Layered) -> list[Any]:
    """A project's deployments, each local only where the user's file marks that URL local."""
    result = []
    for index, deployment in enumerate(deployments):
        if isinstance(deployment, dict) and deployment.get("baseUrl") not in user_local:
            if deployment.get("local"):
                layered.warnings.append(
                    f"{where} marks providers.{name}.deployments[{index}] local; ignored: only "
                    "your own config can send private requests to a provider.")
            deployment = {**deployment, "local": False}
        result.append(deployment)
    return result
