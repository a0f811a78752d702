"""`--help` without markdown-it and pygments.

Typer's help module (`typer.rich_utils`) imports `rich.markdown` (which pulls markdown-it) and
`rich.traceback` (which pulls pygments) when it is imported, for two features this app does not
use: Markdown help text (we keep Typer's default Rich markup) and pretty tracebacks (disabled:
locals can hold API keys). Those two imports were about half of `agentic-onnx --help`'s time.

When help is asked for, `import_help_module` imports Typer's help module while placeholders
stand in for those two modules, then takes the placeholders out again, so that any later
`import rich.markdown` (the live Markdown view) gets the real module. A placeholder class that is
used after all builds the real object, so the worst case is the old speed, never a failure.
"""

from __future__ import annotations

import importlib
import sys
import types

# module -> the one name Typer's help module takes from it
_DEFERRED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


def import_help_module() -> None:
    """Import `typer.rich_utils` without its two unused heavy imports (no-op when it, or either
    deferred module, is already imported: then there is nothing to save)."""
    if "typer.rich_utils" in sys.modules or any(name in sys.modules for name in _DEFERRED):
        return
    stand_ins = {name: _stand_in(name, attr) for name, attr in _DEFERRED.items()}
    sys.modules.update(stand_ins)
    try:
        importlib.import_module("typer.rich_utils")
    except Exception:  # noqa: BLE001 - only a speed-up: Typer imports it normally later
        sys.modules.pop("typer.rich_utils", None)
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


class _Deferred(type):
    """Metaclass of a placeholder: class attributes come from the real class."""

    def __getattr__(cls, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls.real(), name)


def _stand_in(module_name: str, class_name: str) -> types.ModuleType:
    def real(cls: type) -> type:
        return getattr(importlib.import_module(module_name), class_name)

    def new(cls: type, *args: object, **kwargs: object) -> object:
        return cls.real()(*args, **kwargs)

    placeholder = _Deferred(class_name, (), {"real": classmethod(real), "__new__": new})
    module = types.ModuleType(module_name)
    setattr(module, class_name, placeholder)
    return module
