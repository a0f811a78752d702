"""Thin Typer modules: parse, call the core, render. Rich is used only through `render`."""
