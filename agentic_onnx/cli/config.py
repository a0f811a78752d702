"""`agentic-onnx config show|path|validate|init|trust`: the router config files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agentic_onnx.cli.options import DebugOpt, JsonOpt
from agentic_onnx.cli.router import ConfigOpt, config_option

config_app = typer.Typer(help="The router config: where it is, what it says, whether it is valid, "
                         "which project files you trust.", no_args_is_help=True)


@config_app.command("path")
def path_command(ctx: typer.Context, config: ConfigOpt = None, json_output: JsonOpt = False,
                 debug: DebugOpt = False) -> None:
    """Print your config file, the project file and whether it is trusted, the lookup order."""
    from agentic_onnx.cli import render
    from agentic_onnx.router.config_lookup import find_config, find_project_file, search_paths

    explicit = config_option(ctx, config)
    path = find_config(explicit)
    project = find_project_file(explicit, path)
    searched = [{"source": source, "path": str(candidate), "exists": candidate.is_file()}
                for source, candidate in search_paths(explicit)]
    project_json = {"path": str(project.path), "status": project.status} if project else None
    if json_output:
        render.print_json({"path": str(path) if path else None, "project": project_json,
                           "searched": searched})
        return
    if path:
        typer.echo(str(path))
    else:
        render.note("No config file of yours: using defaults from the environment. Looked at:")
        for item in searched:
            render.note(f"  {item['source']}: {item['path']}")
    if project is not None:
        warning = project.warning()
        if warning:
            render.warning(warning)
        else:
            render.note(f"Project config {project.path}: {project.status}.")


@config_app.command("show")
def show_command(ctx: typer.Context, config: ConfigOpt = None, json_output: JsonOpt = False,
                 debug: DebugOpt = False) -> None:
    """Print the effective config (after ${VAR} substitution, defaults and a trusted project
    file), with keys, header values and URL credentials masked."""
    from agentic_onnx.cli import render
    from agentic_onnx.router.config_lookup import load_config
    from agentic_onnx.router.config_view import redacted

    loaded = load_config(config_option(ctx, config))
    _show_warnings(loaded)
    data = redacted(loaded)
    project = str(loaded.project_path) if loaded.project_path else None
    if json_output:
        render.print_json({"path": str(loaded.path) if loaded.path else None,
                           "project": project, "config": data})
        return
    render.note(f"# {loaded.path or 'no config file: defaults from the environment'}")
    if project:
        render.note(f"# + {project} (trusted project config)")
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
    from agentic_onnx.router.config_lookup import load_config

    loaded = load_config(file or config_option(ctx, config))
    warnings = [*loaded.warnings, *_warnings(loaded)]
    if json_output:
        render.print_json({"path": str(loaded.path) if loaded.path else None,
                           "project": str(loaded.project_path) if loaded.project_path else None,
                           "valid": True, "warnings": warnings})
        return
    typer.echo(f"OK: {loaded.path or 'defaults (no config file)'}")
    if loaded.project_path:
        typer.echo(f"OK: {loaded.project_path} (trusted project config)")
    for warning in warnings:
        render.warning(warning)


@config_app.command("init")
def init_command(
    hybrid: Annotated[bool, typer.Option(
        "--hybrid", help="Local for simple and private work, Claude for harder work (keys "
        "from ANTHROPIC_API_KEY / OPENROUTER_API_KEY). Default: local only.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing config (kept as config.json.bak).")] = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write a starter config to ~/.agentic-flow/config.json (mode 0600, never a literal key)."""
    from agentic_onnx.cli import render
    from agentic_onnx.router.config_init import init_config

    result = init_config(hybrid=hybrid, force=force)
    for note in result.shadowed:
        render.warning(note)
    if json_output:
        render.print_json(result.to_json())
        return
    typer.echo(f"Wrote {result.path}")
    if result.backup:
        render.note(f"The previous file is kept as {result.backup}.")
    if hybrid:
        render.note("Set ANTHROPIC_API_KEY (and OPENROUTER_API_KEY for the fallback); "
                    "`agentic-onnx router explain --task \"...\"` shows where a prompt goes.")
    else:
        render.note("Every request runs on this machine. For local + cloud routing: "
                    "`agentic-onnx config init --hybrid --force`.")


@config_app.command("trust")
def trust_command(
    file: Annotated[Optional[str], typer.Argument(
        metavar="[FILE]", help="Project config to trust. Default: ./agentic-flow.json, else "
        "./router.config.json.")] = None,
    revoke: Annotated[bool, typer.Option(
        "--revoke", help="Stop trusting FILE: it is ignored again.")] = False,
    list_trusted: Annotated[bool, typer.Option(
        "--list", help="List the trusted files, and whether each is unchanged.")] = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Trust a project config file (as it is now): it is then layered on your own config.
    A change to the file untrusts it again. Read it before you trust it: it can choose
    providers and models; it can never lower your privacy settings or receive your keys."""
    from agentic_onnx.cli import render
    from agentic_onnx.router.config_lookup import project_file_path
    from agentic_onnx.router.trust import list_trust, revoke_trust, trust_project_file

    if list_trusted:
        entries = list_trust()
        if json_output:
            render.print_json({"trusted": entries})
            return
        if not entries:
            render.note("No trusted project config files.")
        for entry in entries:
            typer.echo(f"{entry['path']}  {entry['status']}  (trusted {entry['trusted_at']})")
        return
    path = Path(file) if file else project_file_path()
    result: dict[str, Any] = revoke_trust(path) if revoke else trust_project_file(path)
    if json_output:
        render.print_json(result)
        return
    if revoke:
        typer.echo(f"{'Revoked' if result['revoked'] else 'Was not trusted'}: {result['path']}")
    else:
        typer.echo(f"Trusted: {result['path']} (sha256 {result['sha256'][:16]}...)")
        render.note("It stays trusted while it is unchanged; after any edit, trust it again.")


def _show_warnings(loaded) -> None:  # noqa: ANN001
    from agentic_onnx.cli import render
    from agentic_onnx.router.config_lookup import new_warnings

    for warning in new_warnings(loaded):
        render.warning(warning)


def _warnings(loaded) -> list[str]:  # noqa: ANN001
    """Valid but probably not what was meant: keys that are unset, seed keys that do nothing."""
    config, result = loaded.config, []
    for name in config.provider_names():
        entry, kind = config.entry(name), config.kind_of(name)
        if kind in ("anthropic", "openrouter") and loaded.api_key(name) is None \
                and name not in loaded.keyless:
            result.append(f"providers.{name}: no API key ({loaded.key_env_vars.get(name)} is "
                          "not set); requests to it will fail.")
        ignored = [key for key, value in (("graphOptimizationLevel", entry.graph_optimization_level),
                                          ("enableMemoryOptimization", entry.enable_memory_optimization),
                                          ("cudaOptions", entry.cuda_options)) if value is not None]
        if ignored:
            result.append(f"providers.{name}: {', '.join(ignored)} accepted for compatibility and "
                          "ignored (onnxruntime-genai reads these from genai_config.json).")
    return result
