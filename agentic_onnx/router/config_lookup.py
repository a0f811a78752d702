"""Which config files are read: the user's own, and a project file only once it is trusted.

The user's file is the first that exists of `--config PATH`, `$AGENTIC_FLOW_CONFIG`,
`$AGENTIC_FLOW_HOME/config.json`, then agentic-flow's own names, `$AGENTIC_FLOW_ROUTER_CONFIG`
and `$AGENTIC_FLOW_HOME/router.config.json` (a file named by a flag or variable must exist);
without one, the defaults from the environment. A project file, the first of
`./agentic-flow.json` and agentic-flow's `./router.config.json` in the working directory, is
layered on top (project_config.py) only when the user trusted these exact bytes (trust.py);
otherwise it is ignored with a warning that names the command to trust it. `--config` names
the one file to read: no project file is layered on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentic_onnx.core.paths import home_dir
from agentic_onnx.router.config import (
    LoadedConfig,
    default_config_data,
    key_env_vars,
    parse_config,
    register_config_secrets,
    substitute_config,
    taken_paths,
    validate_config,
)
from agentic_onnx.router.config_compat import apply_named_providers, unused_keys_warning
from agentic_onnx.router.config_file import MAX_CONFIG_BYTES, parse_json, read_config_file
from agentic_onnx.router.errors import ConfigError
from agentic_onnx.router.project_config import layer_project
from agentic_onnx.router.provider_kinds import provider_class, provider_kinds
from agentic_onnx.router.trust import resolved, trust_status

CONFIG_ENV_VAR = "AGENTIC_FLOW_CONFIG"
ROUTER_CONFIG_ENV_VAR = "AGENTIC_FLOW_ROUTER_CONFIG"  # agentic-flow's
ROUTER_CONFIG_NAME = "router.config.json"  # agentic-flow's, at home and in a project
PROJECT_CONFIG_NAME = "agentic-flow.json"
PROJECT_CONFIG_NAMES = (PROJECT_CONFIG_NAME, ROUTER_CONFIG_NAME)
_NAMED_SOURCES = ("--config", f"${CONFIG_ENV_VAR}", f"${ROUTER_CONFIG_ENV_VAR}")
TRUST_COMMAND = "agentic-onnx config trust"
_NO_ENVIRONMENT_HINT = ("A project file does not read environment variables: write "
                        "${VAR:-default}, or move the value to your own config.")
_shown_warnings: set[str] = set()


@dataclass(frozen=True)
class ProjectFile:
    """`./agentic-flow.json` and what we make of it: trusted, untrusted, changed, unreadable,
    or not consulted (`--config` was given, or it is the user's own file)."""

    path: Path
    status: str
    content: bytes | None = None

    @property
    def trusted(self) -> bool:
        return self.status == "trusted"

    def warning(self) -> str | None:
        if self.status == "untrusted":
            return (f"Ignoring the project config {self.path}: it is read only once you trust "
                    f"it. Review it, then run `{TRUST_COMMAND}` in {self.path.parent}.")
        if self.status == "changed":
            return (f"Ignoring the project config {self.path}: it changed since you trusted "
                    f"it. Review it, then run `{TRUST_COMMAND}` in {self.path.parent} again.")
        if self.status.startswith("unreadable"):
            return f"Ignoring the project config {self.path}: {self.status}."
        return None


def search_paths(explicit: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """The user's config candidates in lookup order, then the project file (unless
    `--config`), each with the reason it is looked at."""
    candidates: list[tuple[str, Path]] = []
    if explicit:
        candidates.append(("--config", Path(explicit).expanduser()))
    env_value = os.environ.get(CONFIG_ENV_VAR)
    if env_value:
        candidates.append((f"${CONFIG_ENV_VAR}", Path(env_value).expanduser()))
    candidates.append(("home", home_dir() / "config.json"))
    router_value = os.environ.get(ROUTER_CONFIG_ENV_VAR)
    if router_value:
        candidates.append((f"${ROUTER_CONFIG_ENV_VAR}", Path(router_value).expanduser()))
    candidates.append(("home (agentic-flow)", home_dir() / ROUTER_CONFIG_NAME))
    if not explicit:
        candidates += [("project", Path.cwd() / PROJECT_CONFIG_NAME),
                       ("project (agentic-flow)", Path.cwd() / ROUTER_CONFIG_NAME)]
    return candidates


def project_file_path() -> Path:
    """The working directory's project file: the first of PROJECT_CONFIG_NAMES that exists
    (`./agentic-flow.json` when none does)."""
    for name in PROJECT_CONFIG_NAMES:
        if (Path.cwd() / name).is_file():
            return Path.cwd() / name
    return Path.cwd() / PROJECT_CONFIG_NAME


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The user's own config file; an explicit or `$AGENTIC_FLOW_CONFIG` path must exist."""
    for source, path in search_paths(explicit):
        if source.startswith("project"):
            break
        if path.is_file():
            return path
        if source in _NAMED_SOURCES:
            raise ConfigError(f"Config file {str(path)!r} (from {source}) does not exist.",
                              "Check the path, or run `agentic-onnx config path` to see the "
                              "lookup order.")
    return None


def find_project_file(explicit: str | os.PathLike[str] | None = None,
                      user_file: Path | None = None) -> ProjectFile | None:
    """The working directory's project file and its trust status (None: there is none)."""
    path = project_file_path()
    if not path.is_file():
        return None
    if explicit:
        return ProjectFile(path, "not read (--config names the one file to read)")
    if user_file is not None and resolved(user_file) == resolved(path):
        return ProjectFile(path, "your own config")
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        return ProjectFile(path, f"unreadable ({error.strerror or error})")
    if len(content) > MAX_CONFIG_BYTES:
        return ProjectFile(path, "unreadable (too large to be a config)")
    return ProjectFile(path, trust_status(path, content), content)


def load_config(explicit: str | os.PathLike[str] | None = None) -> LoadedConfig:
    """The user's config (or the defaults), with a trusted project file layered on top."""
    user_file = find_config(explicit)
    raw = read_config_file(user_file).data if user_file else default_config_data()
    loaded = parse_config(raw, user_file)
    project = find_project_file(explicit, user_file)
    if project is not None and project.trusted and project.content is not None:
        loaded = _layered(loaded, raw, project.path, parse_json(project.content, project.path))
    elif project is not None and project.warning():
        loaded.warnings.append(project.warning())  # type: ignore[arg-type]
    unused = unused_keys_warning(loaded.config)
    if unused:
        loaded.warnings.append(unused)
    return loaded


def new_warnings(loaded: LoadedConfig) -> list[str]:
    """The config's warnings not yet shown by this process (a benchmark loads it N times)."""
    fresh = [warning for warning in loaded.warnings if warning not in _shown_warnings]
    _shown_warnings.update(fresh)
    return fresh


def _layered(user: LoadedConfig, raw: dict[str, Any], path: Path,
             project_raw: Any) -> LoadedConfig:
    where = str(path)
    project = substitute_config(project_raw, where, environ={}, unset_hint=_NO_ENVIRONMENT_HINT)
    validate_config(project, where, partial=True)
    # Named providers (ollama, gemini): the user's entries get their URL and may be local; the
    # project's get neither before layering, so its choices are judged as written.
    project = apply_named_providers(project, defaults=False)
    base = apply_named_providers(substitute_config(raw, str(user.path or "the default config")))
    layered = layer_project(base, project, where, *_kind_facts())
    on = str(user.path) if user.path else "the defaults"
    layered.data = apply_named_providers(layered.data, may_be_local=False)
    config = validate_config(layered.data, f"{where} (layered on {on})", taken_paths(raw))
    variables = {name: variable for name, variable in key_env_vars(raw, config).items()
                 if name not in layered.keyless}
    loaded = LoadedConfig(config, user.path, variables, path, frozenset(layered.keyless),
                          [*user.warnings, *layered.warnings])
    register_config_secrets(loaded)
    return loaded


def _kind_facts() -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]:
    """What layering needs of the provider classes: each kind's vendor URL, the kinds, and
    those whose key a standard variable holds."""
    classes = {kind: provider_class(kind) for kind in provider_kinds()}
    return ({kind: cls.default_base_url for kind, cls in classes.items() if cls.default_base_url},
            tuple(classes), tuple(kind for kind, cls in classes.items() if cls.key_env_var))
