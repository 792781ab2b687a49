"""Shared pytest fixtures.

`ray_local`: ONE local Ray instance for the whole test session (2 CPUs, no dashboard), shut down at the end. Tests
that need Ray take it as an argument. It yields ``ray.get_runtime_context()``; ``ray_local.gcs_address`` is the
address a subprocess joins with ``RAY_ADDRESS=<it>``. Ray's processes inherit this process's environment, so the
session runs offline (``HF_HUB_OFFLINE=1``): nothing is fetched from a model hub.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    import ray

    if ray.is_initialized():  # already started in this process: share it and leave its shutdown to its owner
        yield ray.get_runtime_context()
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024)
    try:
        yield ray.get_runtime_context()
    finally:
        ray.shutdown()
