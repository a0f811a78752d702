"""How local models are loaded: the execution provider and the thread count, the same for every
command. A command line's `-e`/`--threads` win; otherwise the config's local provider entry
(agentic-flow's `executionProviders`, `threads`) decides, as it does for `run`'s onnx provider.
`chat`, `serve` and `onnx test|benchmark` read it here, so one config gives every command the
same EP and threads. `--device-id` (the GPU) comes from the command line only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Notice = Callable[[str], None]

@dataclass(frozen=True)
class LocalSettings:
    execution_provider: str = "auto"
    threads: int | None = None  # None: core.machine.hardware's default for this machine
    device_id: int | None = None  # the GPU (--device-id); None: the EP's default

    @classmethod
    def from_entry(cls, entry: Any, execution_provider: str = "auto",
                   threads: int | None = None, device_id: int | None = None) -> LocalSettings:
        """The flags, else a provider entry's `executionProviders` and `threads`."""
        if execution_provider == "auto" and entry.execution_providers:
            execution_provider = first_available_ep(entry.execution_providers)
        return cls(execution_provider, threads or entry.threads, device_id)


def local_settings(execution_provider: str = "auto", threads: int | None = None,
                   on_notice: Notice | None = None,
                   device_id: int | None = None) -> LocalSettings:
    """The settings for a command that loads a local model itself. The config's local entry is
    the one named `onnx`, else the first entry of a local model kind. The config's warnings (an
    untrusted project file, ...) go to `on_notice`, once per process."""
    from agentic_onnx.router.config_lookup import load_config, new_warnings
    from agentic_onnx.router.secrets import redact

    loaded = load_config()
    for warning in new_warnings(loaded) if on_notice is not None else ():
        on_notice(redact(warning))
    config = loaded.config
    local = [name for name in config.provider_names()
             if config.provider_class(name).catalog_models]
    name = "onnx" if "onnx" in local else (local[0] if local else "onnx")
    return LocalSettings.from_entry(config.entry(name), execution_provider, threads, device_id)


def first_available_ep(names: list[str]) -> str:
    """The seed's `executionProviders` in the user's order: the first this install can use.
    Names we do not know (coreml, wasm) are passed over; none known: `auto`. When none of the
    known ones is available, the first is asked for, so its error says what to install."""
    from agentic_onnx.core.machine.execution_provider import EP_PREFERENCE, available_execution_providers

    aliases = {"directml": "dml", "cuda": "cuda", "dml": "dml", "webgpu": "webgpu", "cpu": "cpu"}
    known = [aliases[name.lower()] for name in names if name.lower() in aliases]
    known = [name for name in dict.fromkeys(known) if name in EP_PREFERENCE]
    if not known:
        return "auto"
    if len(known) == 1:
        return known[0]
    available = available_execution_providers(known)
    return next((name for name in known if name in available), known[0])
