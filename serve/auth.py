"""The endpoint's bearer API key: where it comes from, the loopback rule, and the check of a request.

Conversations are private, so the key is never logged and never travels in plain text through Ray: the driver
(or the app builder) resolves it and hands the ingress only its SHA-256 digest, against which each request's
bearer token is compared in constant time. With no key configured the endpoint is open, which is allowed on
loopback only: binding any other address with no key is refused with an error that says how to set one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path

from serve.config import ServeConfig, ServeConfigError


def resolve_api_key(cfg: ServeConfig) -> str | None:
    """The API key from `cfg.api_key_file` (when set) or the `cfg.api_key_env` variable; None when neither."""
    if cfg.api_key_file:
        path = Path(cfg.api_key_file).expanduser()
        if not path.is_file():
            raise ServeConfigError(f"api_key_file {path} does not exist")
        key = path.read_text(encoding="utf-8").strip()
        if not key:
            raise ServeConfigError(f"api_key_file {path} is empty")
        return key
    key = os.environ.get(cfg.api_key_env, "").strip()
    return key or None


def key_digest(key: str | None) -> str | None:
    return hashlib.sha256(key.encode("utf-8")).hexdigest() if key else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve anywhere
        return False


def check_bind(host: str, digest: str | None, cfg: ServeConfig | None = None) -> None:
    """Refuse to serve beyond loopback with no API key."""
    if digest is None and not is_loopback(host):
        where = (f"the {cfg.api_key_env} environment variable or api_key_file" if cfg else "an API key")
        raise ServeConfigError(f"refusing to serve on {host} without an API key: conversations are private. Set "
                               f"{where}, or bind 127.0.0.1")


def authorized(header: str | None, digest: str | None) -> bool:
    """Whether an `Authorization` header carries the key (always True when no key is configured)."""
    if digest is None:
        return True
    if not header or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(key_digest(header[7:].strip()) or "", digest)
