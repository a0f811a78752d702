"""The core: usable as a library, imports neither Typer nor Rich."""
