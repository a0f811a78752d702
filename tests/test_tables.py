"""Tables fit the terminal (80 columns when piped): low-value columns are left out, never the
names, and the caption says which; `--json` keeps everything."""

from __future__ import annotations

import io
import json

from rich.cells import cell_len
from rich.console import Console

from agentic_onnx.cli.render import Column, fitted_table

from .conftest import MODELS, run_cli

COLUMNS = [Column("provider", "left"), Column("model", "left"), Column("requests"),
           Column("latency p95 ms", drop_order=1), Column("saved $", drop_order=2)]
ROW = ["openrouter", "meta-llama/llama-3.1-8b-instruct", "12", "1234.5", "0.004210"]


def shown(table, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, no_color=True).print(table)
    return out.getvalue().splitlines()


def test_a_table_that_fits_keeps_every_column():
    lines = shown(fitted_table("t", COLUMNS, [ROW], width=200), 200)
    assert all(header in lines[1] for header in ("latency p95 ms", "saved $"))
    assert not any("Not shown" in line for line in lines)


def test_low_value_columns_go_first_and_names_stay_whole():
    table = fitted_table("t", COLUMNS, [ROW], width=68)
    lines = shown(table, 68)
    assert max(map(cell_len, lines)) <= 68
    assert "latency p95 ms" not in lines[1] and "saved $" in lines[1]  # drop order 1 first
    assert ROW[1] in "\n".join(lines) and ROW[0] in "\n".join(lines)  # never truncated
    assert "Not shown to fit 68 columns: latency p95 ms" in " ".join(lines)


def test_only_droppable_columns_are_dropped():
    table = fitted_table("t", COLUMNS, [ROW], width=20)
    assert [column.header for column in table.columns] == ["provider", "model", "requests"]


def test_usage_fits_80_columns_when_piped_and_json_has_all():
    model = str(MODELS / "tiny-phi3-fp32")
    assert run_cli("run", "-m", model, "-t", "hi", "--max-tokens", "2").returncode == 0
    result = run_cli("usage", env={"COLUMNS": "80"})
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and max(map(cell_len, lines)) <= 80
    assert "tiny-phi3-fp32" in result.stdout  # the model's name is not cut with an ellipsis
    line = json.loads(run_cli("usage", "--json").stdout)["lines"][0]
    assert {"prompt_tokens", "latency_p50_ms", "saved_usd"} <= set(line)


def test_router_benchmark_and_onnx_list_fit_80_columns_when_piped():
    model = MODELS / "tiny-phi3-fp32"
    bench = run_cli("router", "benchmark", "--providers", f"onnx:{model}", "-n", "1",
                    "--max-tokens", "2", env={"COLUMNS": "80"})
    assert bench.returncode == 0, bench.stderr
    assert max(map(cell_len, bench.stdout.splitlines())) <= 80 and "tiny-phi3-fp32" in bench.stdout
    assert run_cli("onnx", "add", "a-linked-model-with-a-long-name", "--path",
                   str(model)).returncode == 0
    listed = run_cli("onnx", "list", env={"COLUMNS": "80"})
    assert max(map(cell_len, listed.stdout.splitlines())) <= 80
    assert "a-linked-model-with-a-long-name" in listed.stdout
