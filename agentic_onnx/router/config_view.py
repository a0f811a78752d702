"""The effective config as `config show` prints it: every secret-bearing value masked.

Masked after `${VAR}` substitution: `apiKey` (shown as the `${VAR}` it comes from, else `***`),
every value in `headers` (`***`), and in `baseUrl`/`baseUrls` the userinfo and every query
value. What remains is then passed through `redact`, which also catches a registered secret
that sits somewhere unexpected (a model name, a URL path).
"""

from __future__ import annotations

import os
from typing import Any

from agentic_onnx.router.config import LoadedConfig
from agentic_onnx.router.secrets import MASK, mask_url, redact


def redacted(loaded: LoadedConfig) -> dict[str, Any]:
    """The effective config as JSON data, safe to print."""
    data = loaded.config.model_dump(by_alias=True, exclude_none=True)
    for name, entry in data.get("providers", {}).items():
        if not loaded.config.provider_class(name).can_be_marked_local:
            entry.pop("local", None)  # only meaningful for kinds an entry can mark local
        if "apiKey" in entry:
            entry["apiKey"] = _key_view(loaded, name)
        entry["headers"] = {header: MASK for header in entry.get("headers", {})}
        if "baseUrl" in entry:
            entry["baseUrl"] = mask_url(entry["baseUrl"])
        if "baseUrls" in entry:
            entry["baseUrls"] = [mask_url(url) for url in entry["baseUrls"]]
    return _redact_strings(data)


def _redact_strings(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _redact_strings(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_redact_strings(value) for value in data]
    return redact(data) if isinstance(data, str) else data


def _key_view(loaded: LoadedConfig, name: str) -> str:
    """`${VAR}` when the key is that variable's value (no secret in that), else `***`."""
    variable = loaded.key_env_vars.get(name)
    key = loaded.config.entry(name).api_key
    if variable and (not key or key == os.environ.get(variable)):
        return f"${{{variable}}}"
    return MASK
