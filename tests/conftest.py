"""Shared pytest fixtures.

`ray_local`: ONE local Ray instance for the whole test session (2 CPUs, no dashboard), shut down at the end. Tests
that need Ray take it as an argument. It yields ``ray.get_runtime_context()``; ``ray_local.gcs_address`` is the
address a subprocess joins with ``RAY_ADDRESS=<it>``. Ray's processes inherit this process's environment, so the
session runs offline (``HF_HUB_OFFLINE=1``): nothing is fetched from a model hub, and in Ray's single-machine
mode (memroute.core.ray_auth.loopback_ray, set before ray is imported): every Ray port on 127.0.0.1.

`serve_app`: ONE real Serve app of the tiny model on that Ray (two model replicas, an API key from a secret file,
port 8471 on 127.0.0.1, the computed answer cap), deployed the way `memroute serve` deploys it, for
tests/test_serve.py, tests/test_serve_fuzz.py, tests/test_serve_load.py and tests/test_http_guard.py, run as one block
(see pytest_collection_modifyitems). Tests that change it in place (its
user_config, its queue) put it back. It yields ``SimpleNamespace(url, key, cfg, tmp, gcs)``. Deployed once, for the first
test that asks for it, and shut down right after the last one (not at the end of the session: its replicas hold
CPUs of the session's Ray that later tests need).

`all_cpus`: `ray_local`, once every CPU of it is free; for tests that place actors on all of them.
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
    # The Serve app holds CPUs of the session's Ray from its first user to its last, and a test between them that
    # needs both CPUs (two learners, two SFT workers) would wait for a placement until its timeout. So its users
    # run as one block, in their own order, where the first of them was.
    users = [item for item in items if "serve_app" in getattr(item, "fixturenames", ())]
    if users:
        first = items.index(users[0])
        others = [item for item in items if item not in users]
        items[:] = others[:first] + users + others[first:]
    _SERVE["last"] = users[-1].nodeid if users else None


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


@pytest.fixture
def all_cpus(ray_local):
    """For a test that places actors on every CPU of the session's Ray: waits for what earlier tests held to be
    released, and fails naming the holders instead of letting the placement wait out the test's timeout."""
    import time

    import ray

    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < total:
        if time.monotonic() > deadline:
            from ray.util.state import list_actors

            holders = sorted({a.class_name for a in list_actors(filters=[("state", "=", "ALIVE")])})
            pytest.fail(f"this test needs all {total:g} CPUs of the test Ray, but after 60 s only "
                        f"{ray.available_resources().get('CPU', 0):g} are free; alive actors: {holders}")
        time.sleep(0.5)
    return ray_local


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


@pytest.fixture(scope="session")
def reference_corpus_text() -> str:
    """Every turn of the reference corpus (../shared/data train and test), lower-cased, for the tests that check our
    own text was not copied from it; skips where the corpus is absent."""
    import json
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    files = [shared / "train.jsonl", shared / "test.jsonl"]
    if not all(f.exists() for f in files):
        pytest.skip("reference corpus not available (../shared/data)")
    return "\n".join(turn["content"] for f in files for line in f.read_text(encoding="utf-8").splitlines()
                     if line.strip() for turn in json.loads(line)["conversation"]
                     if isinstance(turn, dict) and isinstance(turn.get("content"), str)).lower()
