"""The Serve application: ingress -> model deployment, and the ways to start it.

    memroute serve [--config F] [--checkpoint X] [--host H] [--port P] [key=value ...]   # = python -m serve.app
    memroute serve reload --checkpoint X [--version N] [--no-probe]                        # hot reload
    serve run configs/serve.yaml  /  serve deploy configs/serve.yaml                      # Serve's own CLI

Every path deploys the same graph from the same builder (`app_builder`, the `import_path` of configs/serve.yaml),
as a Serve *config* (declaratively): that is what lets `serve.reload.publish` change the model's user_config in
place later. `build_app(cfg)` returns the bound graph for callers that want `serve.run` themselves (such an
app runs, but cannot be hot-reloaded: Serve gives apps deployed imperatively a new code version every time).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from memroute.core.errors import MemrouteError, run_command
from serve.auth import check_bind, key_digest, resolve_api_key
from serve.config import ServeConfig, ServeConfigError, resolve_checkpoint
from serve.http_guard import HttpLimits

IMPORT_PATH = "serve.app:app_builder"


def build_app(cfg: ServeConfig | None = None, digest: str | None = None):
    """The bound graph: RouterIngress(RouterModel). `digest` is the API key's SHA-256 (resolved from the config's
    env variable / secret file when not given)."""
    from serve.ingress import RouterIngress
    from serve.model import RouterModel

    cfg = cfg or ServeConfig()
    digest = digest or key_digest(resolve_api_key(cfg))
    check_bind(cfg.host, digest, cfg)
    folder = resolve_checkpoint(cfg.checkpoint, cfg.engine.model)  # fail here, naming the path, not in a replica
    scale = ({"autoscaling_config": cfg.autoscaling_config} if cfg.autoscaling_config
             else {"num_replicas": cfg.num_replicas})
    env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "MEMROUTE_CACHE_DIR") if k in os.environ}
    env.update({k: str(v) for k, v in cfg.replica_env.items()})
    from ray.serve.config import BackpressureConfig

    model = RouterModel.options(
        **scale, max_ongoing_requests=cfg.max_ongoing_requests, max_queued_requests=cfg.max_queued_requests,
        user_config={"checkpoint": str(folder.resolve()) if folder else None, "version": cfg.version,
                     "max_batch_size": cfg.max_batch_size, "batch_wait_timeout_s": cfg.batch_wait_timeout_s,
                     "constrained": cfg.constrained, "samples": cfg.samples},
        ray_actor_options={"num_cpus": cfg.replica_cpus, "num_gpus": cfg.replica_gpus,
                           "runtime_env": {"env_vars": env}},
    ).bind(cfg.engine, cfg.max_tokens, cfg.answer_margin_tokens)
    return RouterIngress.options(
        num_replicas=cfg.ingress_replicas, max_ongoing_requests=cfg.ingress_max_ongoing_requests,
        # past both, Serve's proxy answers 503 itself (a text body) with this Retry-After
        max_queued_requests=cfg.ingress_max_queued_requests,
        backpressure_config=BackpressureConfig(retry_after_s=cfg.retry_after_s),
        user_config={"request_timeout_s": cfg.request_timeout_s, "retry_after_s": cfg.retry_after_s,
                     "draining": False},
        ray_actor_options={"num_cpus": cfg.ingress_cpus},
    ).bind(model, cfg, digest)


def config_from_args(args: dict) -> tuple[ServeConfig, str | None]:
    """A ServeConfig from a Serve config file's `args:` (ServeConfig keys, plus `config`: a YAML file of them, and
    `api_key_sha256`: the key's digest, which `memroute serve` passes so the key itself never leaves the driver)."""
    from memroute.core.config import load_config

    args = dict(args or {})
    path = args.pop("config", None)
    digest = args.pop("api_key_sha256", None)
    # each top-level key as one override: YAML parses the JSON, nested sections stay whole
    cfg = load_config(ServeConfig, path, [f"{k}={json.dumps(v)}" for k, v in args.items()])
    return cfg, digest


def app_builder(args: dict):
    """Serve's application builder (`import_path: serve.app:app_builder`)."""
    cfg, digest = config_from_args(args)
    return build_app(cfg, digest)


def app_config(cfg: ServeConfig, digest: str | None) -> dict:
    """The Serve config of one app (a ServeApplicationSchema dict), as configs/serve.yaml would hold it."""
    from dataclasses import asdict

    args = asdict(cfg)
    folder = resolve_checkpoint(cfg.checkpoint, cfg.engine.model)  # "default" / "none" become a folder / None
    args["checkpoint"] = str(folder.resolve()) if folder else None  # an absolute path: replicas run elsewhere
    if digest:
        args["api_key_sha256"] = digest
    return {"name": cfg.app_name, "route_prefix": cfg.route_prefix, "import_path": IMPORT_PATH, "args": args}


def deploy(cfg: ServeConfig, wait_s: float = 900.0) -> str:
    """Deploy the app from its Serve config on the connected Ray cluster (started here if none); returns its URL.
    Other declaratively deployed apps on the cluster are kept."""
    import ray
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    digest = key_digest(resolve_api_key(cfg))
    check_bind(cfg.host, digest, cfg)
    resolve_checkpoint(cfg.checkpoint, cfg.engine.model)
    from memroute.core.ray_auth import default_token_path, private_if_created

    if not ray.is_initialized():
        # Ray's own auth settings (RAY_AUTH_MODE) apply as set; a token Ray generates for a new cluster is 0600
        with private_if_created(default_token_path()):
            ray.init(address=os.environ.get("RAY_ADDRESS"))
    # the proxy's own limits (head size, header count, read timeouts) go in through Serve's proxy callback, set
    # in the controller's environment, which the proxy actors inherit (serve.http_guard); a Serve instance that is
    # already running keeps the proxies it has
    serve.start(http_options={"host": cfg.host, "port": cfg.port},
                controller_options={"runtime_env": {"env_vars": HttpLimits.from_config(cfg).env()}})
    client = _get_global_client()
    others = [a["deployed_app_config"] for name, a in client.get_serve_details().get("applications", {}).items()
              if name != cfg.app_name and a.get("deployed_app_config")]
    client.deploy_apps(ServeDeploySchema(applications=others + [app_config(cfg, digest)]))
    wait_running(cfg.app_name, wait_s)
    return f"http://{cfg.host}:{cfg.port}{cfg.route_prefix.rstrip('/')}"


def wait_running(app_name: str, wait_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + wait_s
    status = None
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        status = app.status if app else None
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            raise RuntimeError(f"Serve app {app_name!r} failed to deploy: {app.message}")
        time.sleep(1)
    raise TimeoutError(f"Serve app {app_name!r} not running after {wait_s:.0f} s (status {status})")


# --- CLI -------------------------------------------------------------------------------------------------------


def _parse(argv):
    argv = list(argv)
    if argv[:1] == ["reload"]:  # a sub-command by hand: argparse subparsers would swallow key=value overrides
        p = argparse.ArgumentParser(prog="memroute serve reload",
                                    description="Move every replica of a running app to a new adapter, in place.")
        p.add_argument("--checkpoint", required=True, help="adapter folder or run dir ('none': the base model; required)")
        p.add_argument("--version", type=int, help="the new version (default: current + 1)")
        p.add_argument("--app", default="memroute", help="the Serve app to reload (default: %(default)s)")
        p.add_argument("--no-probe", dest="probe", action="store_false",
                       help="publish without probing the candidate first (see serve.reload; default: probe)")
        return p.parse_args(argv[1:], argparse.Namespace(command="reload"))
    p = argparse.ArgumentParser(prog="memroute serve", description="The Ray Serve routing endpoint "
                                "(`memroute serve reload --help`: hot reload).",
                                epilog="In a Ray job: ray job submit -- python -m serve.app --detach [arguments].")
    p.add_argument("--config", help="YAML of ServeConfig keys, e.g. configs/serve_cpu.yaml (default: none, the "
                   "built-in defaults)")
    p.add_argument("--checkpoint", help="adapter folder or run dir (its newest adapter); default: the shipped "
                   "router (memroute/router) with the default model; 'none': the base model")
    p.add_argument("--host", help=f"address to bind; beyond loopback only with an API key (default: the config's "
                   f"host, {ServeConfig.host})")
    p.add_argument("--port", type=int, help=f"HTTP port (default: the config's port, {ServeConfig.port})")
    p.add_argument("--detach", action="store_true", help="return once running (the app stays on the cluster)")
    p.add_argument("--print-config", action="store_true", help="print the merged config (defaults < --config < "
                   "key=value < the flags above) as YAML and exit; runs nothing")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="ServeConfig overrides, e.g. engine.model=tiny num_replicas=2 (default: none)")
    return p.parse_args(argv, argparse.Namespace(command="serve"))


def _overrides(args) -> list[str]:
    """The key=value overrides, then the flags given (they win)."""
    return list(args.overrides) + [f"{k}={json.dumps(v)}" for k, v in (
        ("checkpoint", args.checkpoint), ("host", args.host), ("port", args.port)) if v is not None]


def main(argv=None) -> int:
    from memroute.core.config import load_config

    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.command == "serve" and args.print_config:  # a config error propagates: one line, exit 2
        from memroute.core.config import dump_config

        sys.stdout.write(dump_config(load_config(ServeConfig, args.config, _overrides(args))))
        return 0
    try:
        if args.command == "reload":
            import ray

            from serve.reload import current, describe, probe, publish

            # RAY_ADDRESS names the cluster; "auto" is the one started last on this machine
            ctx = ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
            checkpoint = None if args.checkpoint.lower() == "none" else args.checkpoint
            where = f"app {args.app!r} on {ctx.address_info['gcs_address']}"
            if args.probe:
                verdict = probe(checkpoint, args.app)
                print(describe(verdict), flush=True)
                if not verdict["ok"]:
                    old = current(args.app)
                    print(f"memroute serve: error: refused: {where} still serves version {old.get('version')} "
                          f"({old.get('checkpoint') or 'base model'})", file=sys.stderr)
                    return 1
            new = publish(checkpoint, args.version, args.app, probe_first=False)
            print(f"{where} now serves version {new['version']} ({new['checkpoint'] or 'base model'})")
            return 0
        cfg = load_config(ServeConfig, args.config, _overrides(args))
        if args.detach and not os.environ.get("RAY_ADDRESS"):
            raise ServeConfigError("--detach needs a running cluster (RAY_ADDRESS): a Ray instance started here "
                                   "ends with this command, and the app with it")
        url = deploy(cfg)
    except (RuntimeError, TimeoutError) as e:  # Ray or Serve failed to start the app: a runtime failure (exit 1);
        if isinstance(e, MemrouteError):  # config and input errors go to the error boundary (exit 2)
            raise
        print(f"memroute serve: error: {e}", file=sys.stderr)
        return 1
    banner = f"memroute router on {url} (POST /route, /v1/chat/completions; GET /health, /version, /metrics)"
    if args.detach:
        print(banner, flush=True)
        return 0
    wait_for_stop(banner)
    shutdown(cfg)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def wait_for_stop(banner: str) -> None:
    """Print `banner`, then block until Ctrl-C (SIGINT) or SIGTERM (`kill`, a container stop, systemd): both end in
    the same clean shutdown. The handler is in place before the banner says the app runs."""
    # SIGINT too, explicitly: a process started in the background by a non-interactive shell (a CI job, `cmd &`)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt for it
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(banner, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def drain(app_name: str, timeout_s: float) -> dict:
    from serve.reload import drain as drain_app

    return drain_app(app_name, timeout_s)


def shutdown(cfg: ServeConfig) -> None:
    """The graceful half of a stop: drain (new requests 503 with Retry-After, /health 503; requests in flight
    finish, at most `drain_timeout_s`), then delete the app. A second signal while draining skips the rest of the
    wait, never the delete; signals are ignored while the app is deleted."""
    from ray import serve

    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"stopping: draining requests in flight (at most {cfg.drain_timeout_s:g} s; a second Ctrl-C skips)",
          flush=True)
    try:
        done = drain(cfg.app_name, cfg.drain_timeout_s)
        print(f"drained: {done['in_flight']} requests in flight, {done['left']} left after {done['seconds']} s",
              flush=True)
    except KeyboardInterrupt:
        print("second signal: not waiting for requests in flight", flush=True)
    except Exception as e:  # the app is deleted all the same
        print(f"warning: could not drain: {e}", file=sys.stderr, flush=True)
    for sig in previous:
        signal.signal(sig, signal.SIG_IGN)
    try:
        serve.delete(cfg.app_name)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(run_command("memroute serve", main))
