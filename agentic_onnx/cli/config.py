"""`agentic-onnx config show|path|validate|init|trust`: the router config files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import JsonOpt
from agentic_onnx.cli.router import ConfigOpt, config_option

config_app = typer.Typer(help="The router config: where it is, what it says, whether it is valid, "
                         "which project files you trust.", no_args_is_help=True)


@config_app.command("path")
def path_command(ctx: typer.Context, config: ConfigOpt = None,
                 json_output: JsonOpt = False) -> None:
    """Print your config file, the project file and whether it is trusted, the lookup order."""
    from agentic_onnx.router.config_lookup import find_config, find_project_file, search_paths

    explicit = config_option(ctx, config)
    path = find_config(explicit)
    project = find_project_file(explicit, path)
    searched = [{"source": source, "path": str(candidate), "exists": candidate.is_file()}
                for source, candidate in search_paths(explicit)]
    project_json = {"path": str(project.path), "status": project.status} if project else None

    def show(out: output.Output, _: object) -> None:
        if path:
            out.line(str(path))
        else:
            out.note("No config file of yours: using defaults from the environment. Looked at:")
            for item in searched:
                out.note(f"  {item['source']}: {item['path']}")
        if project is not None:
            warning = project.warning()
            if warning:
                out.warning(warning)
            else:
                out.note(f"Project config {project.path}: {project.status}.")

    output.current().result({"path": str(path) if path else None, "project": project_json,
                             "searched": searched}, show)


@config_app.command("show")
def show_command(ctx: typer.Context, config: ConfigOpt = None,
                 json_output: JsonOpt = False) -> None:
    """Print the effective config (after ${VAR} substitution, defaults and a trusted project
    file), with keys, header values and URL credentials masked."""
    from agentic_onnx.router.config_lookup import load_config, new_warnings
    from agentic_onnx.router.config_view import redacted

    out, loaded = output.current(), load_config(config_option(ctx, config))
    for warning in new_warnings(loaded):
        out.warning(warning)
    data = redacted(loaded)
    project = str(loaded.project_path) if loaded.project_path else None

    def show(out: output.Output, _: object) -> None:
        out.note(f"# {loaded.path or 'no config file: defaults from the environment'}")
        if project:
            out.note(f"# + {project} (trusted project config)")
        out.json_value(data)

    out.result({"path": str(loaded.path) if loaded.path else None, "project": project,
                "config": data}, show)


@config_app.command("validate")
def validate_command(
    ctx: typer.Context,
    file: Annotated[Optional[str], typer.Argument(metavar="[FILE]",
                                                  help="File to check. Default: the one in use.")] = None,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Check a config file; exit 2 with the file, JSON path and expectation when invalid."""
    from agentic_onnx.router.config_lookup import load_config
    from agentic_onnx.router.config_warnings import validation_warnings

    loaded = load_config(file or config_option(ctx, config))
    warnings = validation_warnings(loaded)

    def show(out: output.Output, _: object) -> None:
        out.line(f"OK: {loaded.path or 'defaults (no config file)'}")
        if loaded.project_path:
            out.line(f"OK: {loaded.project_path} (trusted project config)")
        for warning in warnings:
            out.warning(warning)

    output.current().result({"path": str(loaded.path) if loaded.path else None,
                             "project": str(loaded.project_path) if loaded.project_path else None,
                             "valid": True, "warnings": warnings}, show)


@config_app.command("init")
def init_command(
    hybrid: Annotated[bool, typer.Option(
        "--hybrid", help="Local for simple and private work, Claude for harder work (keys "
        "from ANTHROPIC_API_KEY / OPENROUTER_API_KEY). Default: local only.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing config (kept as config.json.bak).")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Write a starter config to ~/.agentic-flow/config.json (mode 0600, never a literal key)."""
    from agentic_onnx.router.config_init import init_config

    out, result = output.current(), init_config(hybrid=hybrid, force=force)
    for note in result.shadowed:
        out.warning(note)

    def show(out: output.Output, _: object) -> None:
        out.line(f"Wrote {result.path}")
        if result.backup:
            out.note(f"The previous file is kept as {result.backup}.")
        if hybrid:
            out.hint("Set ANTHROPIC_API_KEY (and OPENROUTER_API_KEY for the fallback); "
                     "`agentic-onnx router explain --task \"...\"` shows where a prompt goes.")
        else:
            out.hint("Every request runs on this machine. For local + cloud routing: "
                     "`agentic-onnx config init --hybrid --force`.")

    out.result(result.to_json(), show)


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
) -> None:
    """Trust a project config file (as it is now): it is then layered on your own config.
    A change to the file untrusts it again. Read it before you trust it: it can choose
    providers and models; it can never lower your privacy settings or receive your keys."""
    from agentic_onnx.router.config_lookup import project_file_path
    from agentic_onnx.router.trust import list_trust, revoke_trust, trust_project_file

    out = output.current()
    if list_trusted:
        out.result({"trusted": list_trust()}, _show_trusted)
        return
    path = Path(file) if file else project_file_path()
    result: dict[str, Any] = revoke_trust(path) if revoke else trust_project_file(path)
    out.result(result, _show_revoked if revoke else _show_trusted_now)


def _show_trusted(out: output.Output, data: dict[str, Any]) -> None:
    if not data["trusted"]:
        out.note("No trusted project config files.")
    for entry in data["trusted"]:
        out.line(f"{entry['path']}  {entry['status']}  (trusted {entry['trusted_at']})")


def _show_revoked(out: output.Output, result: dict[str, Any]) -> None:
    out.line(f"{'Revoked' if result['revoked'] else 'Was not trusted'}: {result['path']}")


def _show_trusted_now(out: output.Output, result: dict[str, Any]) -> None:
    out.line(f"Trusted: {result['path']} (sha256 {result['sha256'][:16]}...)")
    out.note("It stays trusted while it is unchanged; after any edit, trust it again.")
