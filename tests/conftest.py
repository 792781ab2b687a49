"""Shared pytest fixtures.

`ray_local`: ONE local Ray instance for the whole test session (2 CPUs, no dashboard), shut down at the end. Tests
that need Ray take it as an argument. It yields ``ray.get_runtime_context()``; ``ray_local.gcs_address`` is the
address a subprocess joins with ``RAY_ADDRESS=<it>``. Ray's processes inherit this process's environment, so the
session runs offline (``HF_HUB_OFFLINE=1``): nothing is fetched from a model hub, and in Ray's single-machine
mode (memroute.core.ray_auth.loopback_ray, set before ray is imported): every Ray port on 127.0.0.1.

`serve_app`: ONE real Serve app of the tiny model on that Ray (two model replicas, an API key from a secret file,
port 8471 on 127.0.0.1, the computed answer cap), deployed the way `memroute serve` deploys it, for
tests/test_serve.py, tests/test_serve_fuzz.py and tests/test_serve_load.py. Tests that change it in place (its
user_config, its queue) put it back. It yields ``SimpleNamespace(url, key, cfg, tmp, gcs)``. Deployed once, for the first
test that asks for it, and shut down right after the last one (not at the end of the session: its replicas hold
CPUs of the session's Ray that later tests need).
"""

from __future__ import annotations

import os
import uuid
from types import SimpleNamespace

import pytest

from memroute.core.ray_auth import loopback_ray

loopback_ray()  # the Ray instances the tests start listen on 127.0.0.1 only, as the memroute commands' do

SERVE_PORT = 8471  # not Serve's default 8000: other Serve apps may run on this machine
_SERVE: dict = {}  # "last": the node id of the last test using serve_app; "running": whether it is deployed


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session, config, items):
    users = [item.nodeid for item in items if "serve_app" in getattr(item, "fixturenames", ())]
    _SERVE["last"] = users[-1] if users else None


def _shutdown_serve() -> None:
    if _SERVE.pop("running", False):
        from ray import serve

        serve.shutdown()


def pytest_runtest_teardown(item, nextitem):
    if item.nodeid == _SERVE.get("last"):
        _shutdown_serve()


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


@pytest.fixture(scope="session")
def serve_app(ray_local, tmp_path_factory):
    pytest.importorskip("vllm")
    from actors.engine import EngineConfig
    from serve.app import deploy
    from serve.config import ServeConfig

    tmp = tmp_path_factory.mktemp("serve")
    key = f"mr-{uuid.uuid4().hex}"
    (tmp / "key").write_text(key)
    cfg = ServeConfig(engine=EngineConfig(model="tiny", kv_cache_gib=1, max_model_len=1024, max_num_seqs=16),
                      port=SERVE_PORT, api_key_file=str(tmp / "key"), num_replicas=2, replica_cpus=0.25,
                      ingress_cpus=0.1, max_conversation_tokens=512, max_tokens=None, max_request_conversations=8,
                      max_batch_size=16, max_ongoing_requests=32)
    _SERVE["running"] = True
    try:
        url = deploy(cfg, wait_s=900)
        yield SimpleNamespace(url=url, key=key, cfg=cfg, tmp=tmp, gcs=ray_local.gcs_address)
    finally:
        _shutdown_serve()
