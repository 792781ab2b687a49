"""`memroute cluster`: a local Ray cluster in one command: head, training jobs, Serve endpoint, URLs.

    memroute cluster up [--config FILE] [--tiny] [--head-only] [key=value ...]
    memroute cluster status
    memroute cluster down

`up`, with Ray's own tools at every step:
1. `ray start --head --block` in the background, on its own `--temp-dir` and non-default ports (so it runs beside
   other Ray instances on the machine), `--num-cpus` from the config, dashboard on 127.0.0.1, token auth on
   (RAY_AUTH_MODE=token; `ray get-auth-token --generate` makes ~/.ray/auth_token when there is none). `--block`
   makes that one process own the cluster: ending it ends everything it started, which is what `down` does (never
   `ray stop`: that ends every Ray instance of the user).
2. the quickstart-sized training as Ray jobs (the Jobs SDK, the runtime env of configs/runtime_env.yaml, logs
   streamed here): LoRA SFT on the embedded data, then a short RL run from its adapter; each job ends by writing
   its PNG plots (`memroute plot`).
3. the Serve endpoint from the RL run's adapter, deployed by a third job (`python -m serve.app --detach`: the app
   outlives the job).
4. the dashboard, endpoint, metrics and TensorBoard addresses, printed and kept in <state_dir>/cluster.json.

Every Ray port of the head listens on 127.0.0.1 only: `--node-ip-address=127.0.0.1` alone is rewritten to the
machine's routable address by `ray start`, so the head runs in Ray's single-machine mode (LOOPBACK_ENV,
memroute/core/ray_auth.py), which every job driver and actor inherits; the token guards them as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from data.atomic import write_json_atomic
from memroute.core.config import preset_overrides, shipped_configs_dir
from memroute.core.errors import MemrouteError, run_command
from memroute.core.ray_auth import LOOPBACK_ENV, default_token_path, private_if_created

REPO = Path(__file__).resolve().parents[1]
RUNTIME_ENV = shipped_configs_dir() / "runtime_env.yaml"
# Unix socket paths (<temp_dir>/session_<date>_<pid>/sockets/plasma_store) must stay under 108 bytes
MAX_TEMP_DIR_LEN = 44
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")

class ClusterError(MemrouteError, RuntimeError):
    """The local cluster cannot start, or a job on it failed; the message says which and where its log is."""


class JobTimeout(ClusterError, TimeoutError):
    """A job on the cluster did not finish in time."""


@dataclass
class Ports:
    gcs: int = 6390
    dashboard: int = 8275
    metrics: int = 8090  # Prometheus text of this node's metrics, custom memroute_* gauges included
    agent_http: int = 52375  # Ray's defaults (6379, 8265, 52365, ...) may be taken by another Ray instance
    agent_grpc: int = 52376
    runtime_env_agent: int = 52377
    client_server: int = 20011  # outside the worker port range Ray keeps, 10002-19999
    serve: int = 8010  # the Serve HTTP proxy


@dataclass
class ClusterConfig:
    ports: Ports = field(default_factory=Ports)
    temp_dir: str = "/tmp/ray-memroute"  # Ray's session dir root for this cluster (logs, Prometheus/Grafana configs)
    state_dir: str = "runs/cluster"  # cluster.json, head.log and the run dirs (sft/, rl/)
    num_cpus: int = 2
    token_path: str | None = None  # None: Ray's default, ~/.ray/auth_token
    sft_config: str = "configs/cpu_sft.yaml"
    rl_config: str = "configs/cpu_rl.yaml"
    # quickstart-sized: a few SFT steps on the embedded train set, a few RL steps from that adapter
    sft_overrides: list[str] = field(default_factory=lambda: ["max_steps=6", "checkpoint_every=3",
                                                              "cpus_per_worker=1"])
    rl_overrides: list[str] = field(default_factory=lambda: ["steps=3", "checkpoint_every=1", "eval_every=0",
                                                             "eval_limit=16", "prompts_per_step=4"])
    serve_overrides: list[str] = field(default_factory=list)
    metrics_report_interval_ms: int = 5000  # how often workers push metrics to the node's exporter (Ray: 10 s)
    start_timeout_s: float = 300.0
    job_timeout_s: float = 7200.0


# --- the head --------------------------------------------------------------------------------------------------


def ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def auth_env(token_path: str | None) -> dict[str, str]:
    """What every Ray client and process of this cluster needs in its environment for token auth."""
    env = {"RAY_AUTH_MODE": "token"}
    if token_path:
        env["RAY_AUTH_TOKEN_PATH"] = str(Path(token_path).expanduser().resolve())
    return env


def auth_headers(token_path: str | None) -> dict[str, str]:
    """The HTTP header the dashboard (job API) checks. Passed explicitly, so a client works whatever this process's
    Ray auth settings were when `ray` was first imported (Ray reads RAY_AUTH_MODE once, at import)."""
    path = Path(token_path).expanduser() if token_path else default_token_path()
    if not path.exists():
        raise ClusterError(f"no Ray auth token at {path} (`ray get-auth-token --generate` makes one)")
    return {"Authorization": f"Bearer {path.read_text().strip()}"}


def ensure_token(token_path: str | None) -> None:
    """A token must exist before `ray start` with RAY_AUTH_MODE=token (it refuses to start without one); one made
    here is 0600."""
    if token_path is None:
        with private_if_created(default_token_path()):
            subprocess.run([ray_bin(), "get-auth-token", "--generate"], check=True, stdout=subprocess.DEVNULL,
                           env={**os.environ, "RAY_AUTH_MODE": "token"}, umask=0o077)  # 0600 from the start
        return
    path = Path(token_path).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # what Ray's own generator makes: 256 random bits, hex


def head_command(cfg: ClusterConfig) -> list[str]:
    p = cfg.ports
    return [ray_bin(), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={p.gcs}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={p.dashboard}", f"--metrics-export-port={p.metrics}",
            f"--dashboard-agent-listen-port={p.agent_http}", f"--dashboard-agent-grpc-port={p.agent_grpc}",
            f"--runtime-env-agent-port={p.runtime_env_agent}", f"--ray-client-server-port={p.client_server}",
            f"--num-cpus={cfg.num_cpus}", f"--temp-dir={cfg.temp_dir}", "--disable-usage-stats", "--log-style=record"]


def cluster_env(cfg: ClusterConfig) -> dict[str, str]:
    """The head's environment, which every job driver and actor inherits."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_API_SERVER_ADDRESS"}
    # Ray processes that look the cluster up themselves (Ray Train's PlacementGroupCleaner, the state API) would
    # otherwise find several Ray instances on a shared machine and give up; `ray start` itself ignores it
    env["RAY_ADDRESS"] = f"127.0.0.1:{cfg.ports.gcs}"
    # `python` in a job's entrypoint must be this interpreter (the one with ray, vLLM and memroute installed)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["RAY_metrics_report_interval_ms"] = str(cfg.metrics_report_interval_ms)
    env.update(auth_env(cfg.token_path))
    env.update(LOOPBACK_ENV)  # a one-machine cluster: every Ray port on 127.0.0.1 (memroute/core/ray_auth.py)
    return env


def start_head(cfg: ClusterConfig, log_path: Path, attempts: int = 3) -> subprocess.Popen:
    """`ray start --head --block` in the background, returned once it printed "Ray runtime started". Retried:
    `ray start` gives the raylet a fixed 30 s to register with the GCS, which a loaded machine can miss ("The
    current node timed out during startup"); the failed attempt cleans up after itself."""
    if len(cfg.temp_dir) > MAX_TEMP_DIR_LEN:
        raise ClusterError(f"temp_dir {cfg.temp_dir!r} is {len(cfg.temp_dir)} characters; Ray's Unix socket paths "
                           f"below it overflow past {MAX_TEMP_DIR_LEN}: use a shorter one")
    ensure_token(cfg.token_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            # its own session: Ctrl-C on `memroute cluster up` leaves the head to `down`; the head outlives `up`
            head = subprocess.Popen(head_command(cfg), env=cluster_env(cfg), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + cfg.start_timeout_s
        while head.poll() is None and time.monotonic() < deadline:
            with open(log_path, "rb") as f:
                f.seek(offset)
                if b"Ray runtime started" in f.read():
                    return head
            time.sleep(1)
        if head.poll() is None:  # hung past the timeout: end it (and what it started) before giving up
            stop_head(head.pid, cfg.temp_dir)
            break
        print(f"`ray start` exited with code {head.returncode} (attempt {attempt} of {attempts}; log {log_path})",
              file=sys.stderr, flush=True)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise ClusterError(f"the Ray head did not start (log {log_path}):\n{tail}")


def dashboard_url(cfg: ClusterConfig) -> str:
    return f"http://127.0.0.1:{cfg.ports.dashboard}"


def job_client(cfg: ClusterConfig, timeout_s: float = 0.0):
    """A JobSubmissionClient on the dashboard, retried until `timeout_s` while the dashboard comes up."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return JobSubmissionClient(dashboard_url(cfg), headers=auth_headers(cfg.token_path))
        except (ConnectionError, RuntimeError) as e:
            if time.monotonic() > deadline:
                raise ClusterError(f"no Ray dashboard at {dashboard_url(cfg)} after {timeout_s:.0f}s: {e}") from e
            time.sleep(2)


def stop_head(pid: int, temp_dir: str, timeout_s: float = 120.0) -> bool:
    """End the `ray start --block` process `pid` (only if it is that command for `temp_dir`: a stale pid file must
    not kill an unrelated process), then whatever of its process tree outlived it. Returns whether it was running."""
    import psutil

    try:
        head = psutil.Process(pid)
        cmd = head.cmdline()
    except psutil.NoSuchProcess:
        return False
    if "start" not in cmd or "--block" not in cmd or f"--temp-dir={temp_dir}" not in cmd:
        raise ClusterError(f"pid {pid} is not this cluster's `ray start --block --temp-dir={temp_dir}` "
                           f"({' '.join(cmd)[:200]}); not stopping it")
    family = head.children(recursive=True)
    head.terminate()  # --block: SIGTERM makes `ray start` end the raylet, GCS, dashboard and, through them, workers
    try:
        head.wait(timeout_s)
    except psutil.TimeoutExpired:
        head.kill()
    _, alive = psutil.wait_procs(family, timeout=20)
    for proc in alive:  # e.g. an engine's subprocess whose worker was killed: still ours, by parentage
        proc.terminate()
    _, alive = psutil.wait_procs(alive, timeout=10)
    for proc in alive:
        proc.kill()
    return True


# --- jobs ------------------------------------------------------------------------------------------------------


def runtime_env(working_dir: Path = REPO) -> dict:
    env = yaml.safe_load(RUNTIME_ENV.read_text())
    env["working_dir"] = str(working_dir)
    return env


def submit_job(client, entrypoint: str, submission_id: str, timeout_s: float = 120.0) -> str:
    """Submit with the repo's runtime env; retried while the head's job agent is still registering."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, submission_id=submission_id, runtime_env=runtime_env())
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(3)


def wait_job(client, job_id: str, timeout_s: float, follow: bool = True) -> str:
    """Stream the job's logs (when `follow`) until it ends; returns its final status."""
    deadline = time.monotonic() + timeout_s
    if follow:
        async def tail():
            async for chunk in client.tail_job_logs(job_id):
                print(chunk, end="", flush=True)

        try:
            asyncio.run(asyncio.wait_for(tail(), timeout_s))
        except asyncio.TimeoutError:
            pass
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        time.sleep(2)
    raise JobTimeout(f"job {job_id} not finished after {timeout_s:.0f}s")


def run_job(client, name: str, entrypoint: str, timeout_s: float) -> str:
    job_id = submit_job(client, entrypoint, f"memroute-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"\n== job {job_id}: {entrypoint}", flush=True)
    status = wait_job(client, job_id, timeout_s)
    if status != "SUCCEEDED":
        info = client.get_job_info(job_id)
        raise ClusterError(f"job {job_id} ({name}) ended {status}: {info.message}\n"
                           f"logs: RAY_AUTH_MODE=token ray job logs {job_id} --address {client.get_address()}")
    return job_id


def training_entrypoints(cfg: ClusterConfig, run_root: Path, tiny: bool) -> dict[str, str]:
    """The shell entrypoints of the SFT and RL jobs (each ends with its plots) and of the Serve deployment."""
    sft, rl = run_root / "sft", run_root / "rl"
    # --tiny: the tiny random model's presets (configs/tiny_*.yaml), after the configured overrides as before
    preset = lambda name: preset_overrides(name) if tiny else []  # noqa: E731
    sft_args = [*cfg.sft_overrides, *preset("tiny_sft"), f"run_dir={sft}"]
    rl_args = [*cfg.rl_overrides, *preset("tiny_rl"), f"run_dir={rl}", f"learner.adapter={sft / 'adapter'}"]
    serve_args = ["--detach", "--checkpoint", str(rl), "--port", str(cfg.ports.serve),
                  *preset("tiny_serve"), *cfg.serve_overrides]
    plot = lambda run: shlex.join(["python", "-m", "memroute.plot", str(run)])  # noqa: E731
    return {
        "sft": shlex.join(["python", "-m", "learner.sft", "--config", cfg.sft_config, *sft_args]) + " && " + plot(sft),
        "rl": shlex.join(["python", "-m", "learner.rl", "--config", cfg.rl_config, *rl_args]) + " && " + plot(rl),
        "serve": shlex.join(["python", "-m", "serve.app", *serve_args]),
    }


# --- the commands ----------------------------------------------------------------------------------------------


def read_state(state_dir: Path) -> dict | None:
    path = state_dir / "cluster.json"
    return json.loads(path.read_text()) if path.exists() else None


def head_alive(state: dict) -> bool:
    import psutil

    try:
        return f"--temp-dir={state['temp_dir']}" in psutil.Process(state["pid"]).cmdline()
    except psutil.NoSuchProcess:
        return False


def urls(cfg: ClusterConfig, run_root: Path) -> dict[str, str]:
    return {
        "dashboard": dashboard_url(cfg),
        "endpoint": f"http://127.0.0.1:{cfg.ports.serve}/route",
        "metrics": f"http://127.0.0.1:{cfg.ports.metrics}/metrics",
        "tensorboard": f"{Path(sys.executable).with_name('tensorboard')} --logdir {run_root} --host 127.0.0.1",
        "plots": f"{run_root / 'sft' / 'plots'}  {run_root / 'rl' / 'plots'}",
        "jobs": f"RAY_AUTH_MODE=token {ray_bin()} job list --address {dashboard_url(cfg)}",
    }


def up(cfg: ClusterConfig, tiny: bool = False, head_only: bool = False) -> dict:
    state_dir = Path(cfg.state_dir).resolve()
    old = read_state(state_dir)
    if old and head_alive(old):
        raise ClusterError(f"a cluster from `memroute cluster up` is already running (pid {old['pid']}, "
                           f"{old['urls']['dashboard']}): `memroute cluster down` first")
    log_path = state_dir / "head.log"
    print(f"starting the Ray head ({cfg.num_cpus} CPUs, temp dir {cfg.temp_dir}, log {log_path}) ...", flush=True)
    head = start_head(cfg, log_path)
    state = {"pid": head.pid, "temp_dir": cfg.temp_dir, "token_path": cfg.token_path,
             "urls": urls(cfg, state_dir), "jobs": {}}
    write_json_atomic(state_dir / "cluster.json", state)
    try:
        client = job_client(cfg, cfg.start_timeout_s)
    except BaseException:
        stop_head(head.pid, cfg.temp_dir)
        raise
    if head_only:
        return state
    try:
        for name, entrypoint in training_entrypoints(cfg, state_dir, tiny).items():
            state["jobs"][name] = run_job(client, name, entrypoint, cfg.job_timeout_s)
            write_json_atomic(state_dir / "cluster.json", state)
        _check_endpoint(state["urls"]["endpoint"])
    except ClusterError as e:
        raise ClusterError(f"{e}\nthe head is still up for inspection ({state['urls']['dashboard']}); "
                           "`memroute cluster down` stops it") from e
    return state


def _check_endpoint(route_url: str) -> None:
    import httpx

    health = route_url.rsplit("/", 1)[0] + "/healthz"
    resp = httpx.get(health, timeout=30)
    if resp.status_code != 200:
        raise ClusterError(f"the endpoint is deployed but {health} answered {resp.status_code}: {resp.text[:300]}")


def down(state_dir: str | Path) -> bool:
    state = read_state(Path(state_dir).resolve())
    if state is None:
        return False
    return stop_head(state["pid"], state["temp_dir"])


def print_urls(state: dict) -> None:
    width = max(map(len, state["urls"]))
    for name, url in state["urls"].items():
        print(f"  {name:<{width}}  {url}")
    if state.get("token_path"):
        print(f"  (clients: RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={state['token_path']})")
    else:
        print("  (clients: RAY_AUTH_MODE=token with ~/.ray/auth_token; the dashboard asks for that token once)")


def main(argv=None) -> int:
    from memroute.core.config import load_config

    p = argparse.ArgumentParser(prog="memroute cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    up_p = sub.add_parser("up", help="start the head, train (SFT then RL) as Ray jobs, serve, print the URLs")
    up_p.add_argument("--config", help="YAML of ClusterConfig keys (ports, temp_dir, state_dir, overrides, ...; "
                      "default: none, the built-in defaults)")
    up_p.add_argument("--tiny", action="store_true", help="the tiny random model: the whole pipeline in minutes")
    up_p.add_argument("--head-only", action="store_true", help="start the head and stop there (submit jobs yourself)")
    up_p.add_argument("--print-config", action="store_true", help="print the merged ClusterConfig (defaults < "
                      "--config < key=value) as YAML and exit; starts nothing")
    up_p.add_argument("overrides", nargs="*", metavar="key=value",
                      help="ClusterConfig overrides, e.g. ports.serve=8100 num_cpus=2 (default: none)")
    for name, help_ in (("down", "stop the cluster `up` started"), ("status", "the URLs and jobs of the cluster")):
        q = sub.add_parser(name, help=help_, description=help_)
        q.add_argument("--state-dir", default=ClusterConfig.state_dir,
                       help="where `up` keeps cluster.json (its state_dir; default: %(default)s)")
    args = p.parse_args(argv)

    if args.command == "down":
        stopped = down(args.state_dir)
        print("stopped the cluster" if stopped else f"no running cluster recorded in {args.state_dir}")
        return 0
    if args.command == "status":
        state = read_state(Path(args.state_dir).resolve())
        if state is None or not head_alive(state):
            print(f"no running cluster recorded in {args.state_dir}")
            return 1
        print(f"running (pid {state['pid']}); jobs: {state['jobs'] or 'none yet'}")
        print_urls(state)
        return 0
    cfg = load_config(ClusterConfig, args.config, args.overrides)
    if args.print_config:
        from memroute.core.config import dump_config

        sys.stdout.write(dump_config(cfg))
        return 0
    state = up(cfg, tiny=args.tiny, head_only=args.head_only)
    print("\nthe cluster is up:")
    print_urls(state)
    print("stop it with: memroute cluster down")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute cluster", main))
