"""`agentic-onnx config show|path|validate`: the router config file."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from agentic_onnx.cli.options import DebugOpt, JsonOpt
from agentic_onnx.cli.router import ConfigOpt, config_option

config_app = typer.Typer(help="The router config: where it is, what it says, whether it is valid.",
                         no_args_is_help=True)


@config_app.command("path")
def path_command(ctx: typer.Context, config: ConfigOpt = None, json_output: JsonOpt = False,
                 debug: DebugOpt = False) -> None:
    """Print the config file in use (and the lookup order)."""
    from agentic_onnx.cli import render
    from agentic_onnx.router.config import find_config, search_paths

    explicit = config_option(ctx, config)
    path = find_config(explicit)
    searched = [{"source": source, "path": str(candidate), "exists": candidate.is_file()}
                for source, candidate in search_paths(explicit)]
    if json_output:
        render.print_json({"path": str(path) if path else None, "searched": searched})
        return
    if path:
        typer.echo(str(path))
    else:
        render.note("No config file: using defaults from the environment. Looked at:")
        for item in searched:
            render.note(f"  {item['source']}: {item['path']}")


@config_app.command("show")
def show_command(ctx: typer.Context, config: ConfigOpt = None, json_output: JsonOpt = False,
                 debug: DebugOpt = False) -> None:
    """Print the effective config (after ${VAR} substitution and defaults), keys redacted."""
    from agentic_onnx.cli import render
    from agentic_onnx.router.config import load_config, redacted

    loaded = load_config(config_option(ctx, config))
    data = redacted(loaded)
    if json_output:
        render.print_json({"path": str(loaded.path) if loaded.path else None, "config": data})
        return
    render.note(f"# {loaded.path or 'no config file: defaults from the environment'}")
    render.print_json(data)


@config_app.command("validate")
def validate_command(
    ctx: typer.Context,
    file: Annotated[Optional[str], typer.Argument(metavar="[FILE]",
                                                  help="File to check. Default: the one in use.")] = None,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check a config file; exit 2 with the file, JSON path and expectation when invalid."""
    from agentic_onnx.cli import render
    from agentic_onnx.router.config import load_config

    loaded = load_config(file or config_option(ctx, config))
    warnings = _warnings(loaded)
    if json_output:
        render.print_json({"path": str(loaded.path) if loaded.path else None, "valid": True,
                           "warnings": warnings})
        return
    typer.echo(f"OK: {loaded.path or 'defaults (no config file)'}")
    for warning in warnings:
        render.warning(warning)


def _warnings(loaded) -> list[str]:  # noqa: ANN001
    """Valid but probably not what was meant: keys that are unset, seed keys that do nothing."""
    config, result = loaded.config, []
    for name in config.provider_names():
        entry, kind = config.entry(name), config.kind_of(name)
        if kind in ("anthropic", "openrouter") and loaded.api_key(name) is None:
            result.append(f"providers.{name}: no API key ({loaded.key_env_vars.get(name)} is "
                          "not set); requests to it will fail.")
        ignored = [key for key, value in (("graphOptimizationLevel", entry.graph_optimization_level),
                                          ("enableMemoryOptimization", entry.enable_memory_optimization),
                                          ("cudaOptions", entry.cuda_options)) if value is not None]
        if ignored:
            result.append(f"providers.{name}: {', '.join(ignored)} accepted for compatibility and "
                          "ignored (onnxruntime-genai reads these from genai_config.json).")
    return result
