"""Which config values are secrets, registered for `secrets.redact` as the config is loaded.

Secret-bearing places: a provider's (and each deployment's) `apiKey`, every value of its
`headers`, and the credentials of its URLs (userinfo, query values). A `${VAR}` substituted into
a URL is a secret too, unless it only names the host and port (`http://${VLLM_HOST}/v1`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from agentic_onnx.router.secrets import register_secret, url_secrets


def register_substituted(data: dict[str, Any], taken: list[tuple[str, str]]) -> None:
    """The values `${VAR}` put into secret-bearing places of `data` (substituted JSON)."""
    for json_path, value in taken:
        if _is_url_place(json_path):
            _register_url_part(data, json_path, value)
        elif _is_secret_place(json_path):
            register_secret(value)


def register_config_secrets(loaded: Any) -> None:
    """Every key, header value and URL credential of the config, for `secrets.redact`.
    `loaded` is a router.config.LoadedConfig (not imported: config imports this module)."""
    for name in loaded.config.provider_names():
        entry = loaded.config.entry(name)
        register_secret(loaded.api_key(name))
        for value in entry.headers.values():
            register_secret(value)
        for deployment in entry.deployments or ():
            register_secret(deployment.api_key)
            for value in (deployment.headers or {}).values():
                register_secret(value)
        for url in entry.urls(loaded.config.kind_of(name)):
            for secret in url_secrets(url):
                register_secret(secret)


def _is_secret_place(json_path: str) -> bool:
    return bool(re.fullmatch(r"providers\.[^.]+\.(deployments\[\d+\]\.)?(apiKey|headers\..+)",
                             json_path))


def _is_url_place(json_path: str) -> bool:
    return bool(re.fullmatch(
        r"providers\.[^.]+\.(baseUrl|baseUrls\[\d+\]|deployments\[\d+\]\.baseUrl)", json_path))


def _register_url_part(data: dict[str, Any], json_path: str, value: str) -> None:
    """A variable in a URL is a secret unless it only names the host and port."""
    url = _value_at(data, json_path)
    try:
        host_port = urlsplit(url).netloc.rpartition("@")[2] if isinstance(url, str) else ""
    except ValueError:
        host_port = ""
    if value not in host_port:
        register_secret(value)


def _value_at(data: Any, json_path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", json_path):
        if part.startswith("["):
            index = int(part[1:-1])
            data = data[index] if isinstance(data, list) and index < len(data) else None
        else:
            data = data.get(part) if isinstance(data, dict) else None
    return data


