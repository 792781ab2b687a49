"""Ray on one machine, kept to it: where Ray's auth token lives (and keeping a token file Ray generates private),
and every Ray port on loopback for a Ray instance this machine starts for itself.

Loopback. By default Ray's GCS, raylet, agents, workers and drivers listen on every interface, guarded by the
token alone, even with `--node-ip-address=127.0.0.1` (`ray start` swaps a loopback address for the machine's
routable one). Ray's single-machine mode, the default on macOS and Windows and switched on elsewhere by
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, takes 127.0.0.1 as the node's address, and then every one of those ports
binds to it (docs/cluster.md lists what was measured). It is read when `ray` is imported, so it is set before
that, and only for an instance started here: a node of a multi-machine cluster must not have it (its peers could
not reach it)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray's single-machine mode: every port on 127.0.0.1


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


def starts_local_ray(environ=os.environ) -> bool:
    """Whether a `ray.init()` here would start a Ray instance of its own: no RAY_ADDRESS, and no cluster that
    `ray start` left for this machine's drivers to find (Ray's own lookup, /tmp/ray/ray_current_cluster)."""
    import tempfile

    left_by_ray_start = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    return not environ.get("RAY_ADDRESS") and not left_by_ray_start.exists()


def loopback_ray(environ=os.environ) -> bool:
    """Before `ray` is imported: put the Ray instance this process would start on loopback (LOOPBACK_ENV), unless
    it joins an existing cluster or the variable is set already. Returns whether it did."""
    if not starts_local_ray(environ):
        return False
    changed = False
    for key, value in LOOPBACK_ENV.items():
        if key not in environ:
            environ[key] = value
            changed = True
    return changed
