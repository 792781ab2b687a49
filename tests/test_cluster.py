"""Cluster operations: the cluster-launcher configs against Ray's own validator, and one real local cluster.

The slow test starts `ray start --head --block` on free ports with its own --temp-dir and auth token, then, with
Ray's CLI as a user would: a tiny RL job (`ray job submit`) that is stopped (`ray job stop`) once it has
checkpointed and exported its custom metrics, the same job submitted again (it resumes from the checkpoint and
succeeds, its logs streamed back), the Serve endpoint deployed from that run by a third job and called over HTTP.
Terminating the `ray start` process ends everything it started; the test checks nothing of it is left.
"""

import copy
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from learner.tracking import read_metrics
from memroute.cluster import (
    RUNTIME_ENV,
    ClusterConfig,
    Ports,
    auth_env,
    ensure_token,
    job_client,
    ray_bin,
    start_head,
    stop_head,
)
from memroute.core.ray_auth import default_token_path, private_if_created

REPO = Path(__file__).resolve().parents[1]
CONV = [{"role": "user", "content": "I lead paid social for EMEA and report to the CMO."},
        {"role": "assistant", "content": "Noted: you run paid social for EMEA."}]


def prepared(path: Path) -> dict:
    """What `ray up` does to a config before it touches a cloud: fill defaults, then Ray's schema validation."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(yaml.safe_load(path.read_text())))
    validate_config(cfg)
    return cfg


def test_cloud_config_is_valid_for_ray_up():
    cfg = prepared(REPO / "cluster.yaml")
    types = cfg["available_node_types"]
    assert cfg["provider"]["type"] == "aws" and types[cfg["head_node_type"]]["resources"].get("GPU", 0) == 0
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and all(t["max_workers"] > t.get("min_workers", 0) for t in gpu)  # autoscaling
    assert any('pip install -q -e ".[gpu]"' in c for c in cfg["setup_commands"])
    assert cfg["file_mounts"]["~/memroute"] == "."
    assert all("RAY_AUTH_MODE=token" in " ".join(cfg[k]) for k in ("head_start_ray_commands",
                                                                   "worker_start_ray_commands"))


def test_local_config_is_valid_and_never_runs_ray_stop():
    raw = yaml.safe_load((REPO / "cluster-local.yaml").read_text())
    assert raw["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    cfg = prepared(REPO / "cluster-local.yaml")
    assert cfg["max_workers"] == 0
    start = " ".join(cfg["head_start_ray_commands"])
    assert "ray stop" not in start and "RAY_AUTH_MODE=token" in start
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in start  # every Ray port on 127.0.0.1
    assert "--ray-client-server-port=20011" in start  # outside Ray's worker port range (10002-19999)


def test_validator_rejects_what_ray_up_would():
    import jsonschema

    from ray.autoscaler._private.util import validate_config

    good = prepared(REPO / "cluster.yaml")
    with pytest.raises(jsonschema.ValidationError):
        validate_config({**good, "max_worker": 3})  # a typo of max_workers: the schema has no such key
    bad = copy.deepcopy(good)
    del bad["available_node_types"]["gpu_worker"]["resources"]
    with pytest.raises(jsonschema.ValidationError):
        validate_config(bad)


def test_the_ray_token_files_memroute_makes_are_0600(tmp_path, monkeypatch):
    import stat

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    old_umask = os.umask(0o022)  # the usual umask, under which Ray's own generator writes 0644
    try:
        ensure_token(str(tmp_path / "own" / "token"))  # a cluster's own token file
        assert mode(tmp_path / "own" / "token") == 0o600
        # Ray's default token, made by `ray get-auth-token --generate` (HOME: a temp dir, so ~/.ray is untouched)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            monkeypatch.delenv(var, raising=False)
        ensure_token(None)
        assert default_token_path() == tmp_path / "home" / ".ray" / "auth_token"
        assert mode(default_token_path()) == 0o600 and len(default_token_path().read_text().strip()) >= 32
        # what `memroute serve` wraps ray.init in: a token it creates ends up 0600; one already there is left alone
        made, kept = tmp_path / "made", tmp_path / "kept"
        kept.write_text("t")
        with private_if_created(made), private_if_created(kept):
            made.write_text("t")  # as ray.init's generator writes it: the umask's 0644
        assert mode(made) == 0o600 and mode(kept) == 0o644
    finally:
        os.umask(old_umask)


def test_a_ray_instance_started_here_is_put_on_loopback(tmp_path, monkeypatch):
    import tempfile

    from memroute.core.ray_auth import LOOPBACK_ENV, loopback_ray

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    env: dict = {}
    assert loopback_ray(env) and env == LOOPBACK_ENV  # no cluster to join: the instance we start stays on 127.0.0.1
    mine = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
    assert not loopback_ray(mine) and mine == {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}  # the user's choice wins
    joining = {"RAY_ADDRESS": "10.0.0.5:6379"}
    assert not loopback_ray(joining) and joining == {"RAY_ADDRESS": "10.0.0.5:6379"}  # a driver of a cluster
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("192.0.2.2:6379")  # `ray start` ran on this machine
    env = {}
    assert not loopback_ray(env) and env == {}
    from memroute.cluster import cluster_env

    assert cluster_env(ClusterConfig())["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # the local head, always


def test_runtime_env_keeps_the_upload_small(tmp_path):
    from ray._private.runtime_env.packaging import create_package  # what `ray job submit --working-dir` zips

    env = yaml.safe_load(RUNTIME_ENV.read_text())
    assert {".venv", "runs", ".git", "candidates"} <= set(env["excludes"]) and env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    create_package(str(REPO), tmp_path / "pkg.zip", include_gitignore=True, excludes=env["excludes"])
    # Ray refuses 512 MiB; the code, configs, data and the shipped router are ~12 MB zipped
    assert (tmp_path / "pkg.zip").stat().st_size < 50 * 2**20


# --- a real local cluster ------------------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ray_cli(cfg: ClusterConfig, *args, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    """`ray job ...` as a user runs it: the dashboard's address and token auth in the environment."""
    env = {**os.environ, **auth_env(cfg.token_path),
           "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{cfg.ports.dashboard}"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([ray_bin(), "job", *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"ray job {args[:3]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def submit(cfg: ClusterConfig, job_id: str, entrypoint: list[str], *flags, timeout: float = 900):
    args = ["submit", "--submission-id", job_id, "--runtime-env", RUNTIME_ENV, "--working-dir", REPO, *flags, "--",
            *entrypoint]
    for _ in range(40):  # the head's job agent registers a little after the dashboard answers
        proc = ray_cli(cfg, *args, timeout=timeout, check=False)
        if "No available agent" not in proc.stdout + proc.stderr:
            return proc
        time.sleep(3)
    return proc


def scrape(cfg: ClusterConfig) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{cfg.ports.metrics}/metrics", timeout=10) as resp:
        return resp.read().decode()


def listening_beyond_loopback(pid: int) -> list[str]:
    """`process: address:port` for each listening TCP socket of `pid` and its descendants not bound to loopback."""
    import psutil

    root = psutil.Process(pid)
    out = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN and c.laddr.ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1"):
                out.append(f"{name}: {c.laddr.ip}:{c.laddr.port}")
    return out


def checkpoint_step(run: Path) -> int:
    manifest = run / "checkpoint" / "memroute_checkpoint.json"
    return json.loads(manifest.read_text())["state"]["step"] if manifest.exists() else 0


@pytest.mark.slow
@pytest.mark.timeout(2400)  # three vLLM engine starts (two RL jobs, Serve): ~6 min alone, far more on a busy machine
def test_local_cluster_jobs_stop_resume_metrics_and_serve(tmp_path_factory):
    pytest.importorskip("vllm")
    import psutil
    from ray.job_submission import JobStatus

    base = tmp_path_factory.mktemp("rc")  # short: Ray's Unix socket paths live below it
    names = ("gcs", "dashboard", "metrics", "agent_http", "agent_grpc", "runtime_env_agent", "client_server", "serve")
    cfg = ClusterConfig(ports=Ports(**dict(zip(names, free_ports(len(names))))), temp_dir=str(base / "ray"),
                        state_dir=str(base), num_cpus=2, token_path=str(base / "token"),
                        metrics_report_interval_ms=2000)
    log = base / "head.log"
    head = start_head(cfg, log)
    family: list = []
    try:
        client = job_client(cfg, 300)  # the dashboard (job API) answers; statuses come from the SDK
        run = base / "rl"
        steps = 40
        rl = ["python", "-m", "learner.rl", "--config", "configs/tiny_rl.yaml", f"run_dir={run}", f"steps={steps}",
              "checkpoint_every=1"]

        # 1. submit, wait for a checkpoint and the custom gauges on the node's metrics export port, stop the job
        assert "rl-a" in submit(cfg, "rl-a", rl, "--no-wait").stdout
        deadline, seen = time.monotonic() + 600, ""
        while time.monotonic() < deadline:
            status = client.get_job_status("rl-a")
            assert not status.is_terminal(), f"{status}: {client.get_job_logs('rl-a')[-4000:]}"
            seen = "\n".join(line for line in scrape(cfg).splitlines() if line.startswith("ray_memroute_rl_"))
            if seen and checkpoint_step(run) >= 2:
                break
            time.sleep(2)
        assert "ray_memroute_rl_reward{" in seen and 'run="rl"' in seen, f"no memroute gauges exported:\n{seen}"
        # one machine, kept to it: every port of the head's processes (GCS, raylet, agents, dashboard, the job's
        # driver, learner and rollout worker, vLLM) listens on loopback only
        exposed = listening_beyond_loopback(head.pid)
        assert not exposed, f"Ray ports listening beyond 127.0.0.1: {exposed}"
        ray_cli(cfg, "stop", "rl-a")  # waits until the job has stopped
        assert client.get_job_status("rl-a") == JobStatus.STOPPED
        saved = checkpoint_step(run)
        assert 2 <= saved < steps
        before = [r for r in read_metrics(run / "metrics.jsonl") if r["step"] <= saved]

        # 2. the same job again: it resumes from the checkpoint (rows up to it untouched), finishes, logs streamed
        done = submit(cfg, "rl-b", rl)
        assert done.returncode == 0 and "eval: mean F1" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
        assert client.get_job_status("rl-b") == JobStatus.SUCCEEDED
        rows = read_metrics(run / "metrics.jsonl")
        assert [r["step"] for r in rows] == list(range(1, steps + 1))
        assert rows[:saved] == before  # a restart from scratch would have rewritten them
        assert (run / "adapter" / "adapter_config.json").exists()

        # 3. serve the run's adapter (a job deploys the Serve app, which outlives it) and call it over HTTP
        serve = ["python", "-m", "serve.app", "--detach", "--checkpoint", str(run), "--port", str(cfg.ports.serve),
                 "--config", "configs/tiny_serve.yaml", "replica_cpus=0.5", "ingress_cpus=0.1"]
        deployed = submit(cfg, "serve", serve)
        assert deployed.returncode == 0, deployed.stdout[-4000:] + deployed.stderr[-2000:]
        from serve.client import RouterClient

        with RouterClient(f"http://127.0.0.1:{cfg.ports.serve}", api_key=os.environ.get("MEMROUTE_API_KEY")) as c:
            result = c.route(CONV)
            assert result["parsed"] and result["labels"]  # constrained decoding: even the random model parses
            assert Path(c.version()["checkpoint"]).resolve() == (run / "adapter").resolve()
        deadline = time.monotonic() + 60
        while "ray_serve_num_http_requests" not in scrape(cfg) and time.monotonic() < deadline:
            time.sleep(2)
        assert "ray_serve_num_http_requests" in scrape(cfg)
    finally:
        family = psutil.Process(head.pid).children(recursive=True) if head.poll() is None else []
        stopped = stop_head(head.pid, cfg.temp_dir)
    assert stopped and head.wait(5) is not None
    left = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"processes of the cluster still running: {[(p.pid, p.name()) for p in left]}"
