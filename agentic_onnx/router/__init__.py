"""The router: config, rules, providers (local and cloud), fallback, costs and the usage log.

No Typer, no Rich, and no HTTP client at import time: `--help` must stay fast.
"""
