"""Ray's token auth, the part both the local cluster (`memroute cluster`) and `memroute serve` need: where the
token lives, and keeping a token file that Ray generates private."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def default_token_path() -> Path:
    """Where Ray reads its auth token and where its generator writes one (`ray get-auth-token --generate`, or
    `ray.init` with RAY_AUTH_MODE=token and no token)."""
    return Path.home() / ".ray" / "auth_token"


@contextmanager
def private_if_created(path: Path):
    """A token file the body creates at `path` ends up 0600: Ray's generator writes it with the umask's mode
    (0644 as a rule), readable by every user of the machine. A file that was there before is left as it is."""
    existed = path.exists()
    try:
        yield
    finally:
        if not existed and path.exists():
            os.chmod(path, 0o600)
