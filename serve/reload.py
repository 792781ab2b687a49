"""Hot reload: publish a new adapter version to every replica of a running app, without downtime.

The adapter is the model deployment's `user_config`. `publish` re-applies the app's own Serve config (the one
`serve.app.deploy`, `serve deploy` or `serve run config.yaml` applied) with only that user_config changed: Serve
sees the same code version and calls `reconfigure` on every live replica in place, no replica restarts
(see serve.model for why no request fails). The other declaratively deployed apps are re-applied unchanged,
since a Serve config names every app and drops the ones it leaves out.

Callers: `memroute serve reload --checkpoint X [--version N]`, or a training job on the same cluster
(`from serve.reload import publish; publish(adapter_dir, version=step)`).
"""

from __future__ import annotations

import time
from pathlib import Path

MODEL_DEPLOYMENT = "RouterModel"


class ReloadError(RuntimeError):
    pass


def _client():
    from ray.serve.context import _get_global_client

    return _get_global_client()


def current(app_name: str = "memroute") -> dict:
    """The model deployment's current user_config ({"checkpoint", "version", ...})."""
    details = _client().get_serve_details()
    app = details.get("applications", {}).get(app_name)
    if app is None:
        apps = sorted(details.get("applications", {}))
        raise ReloadError(f"no Serve app named {app_name!r} is running (apps: {apps})")
    deployment = app["deployments"].get(MODEL_DEPLOYMENT)
    if deployment is None:
        raise ReloadError(f"app {app_name!r} has no {MODEL_DEPLOYMENT} deployment: not a memroute app")
    return dict(deployment["deployment_config"].get("user_config") or {})


def publish(checkpoint: str | Path | None, version: int | None = None, app_name: str = "memroute",
            wait_s: float = 600.0) -> dict:
    """Move every replica of `app_name` to `checkpoint` (an adapter folder or run dir; None = base model;
    "default" = the shipped router) as
    `version` (default: the current version + 1). Blocks until the replicas answer with it; returns the new
    user_config."""
    from serve.config import resolve_checkpoint

    # resolve here: a bad path is an error for the caller, not a failed reconfigure on the replicas
    folder = resolve_checkpoint(checkpoint)
    version = int(version) if version is not None else int(current(app_name).get("version", 0)) + 1
    return update(app_name, {"checkpoint": str(folder.resolve()) if folder else None, "version": version}, wait_s)


def update(app_name: str, changes: dict, wait_s: float = 600.0) -> dict:
    """Apply `changes` to the model deployment's user_config (the adapter, or the batching / decoding knobs:
    max_batch_size, batch_wait_timeout_s, constrained) on every replica, in place; returns the new user_config
    once every replica runs it."""
    from ray.serve.schema import ServeDeploySchema

    new = {**current(app_name), **changes}
    client = _client()
    configs = []
    for name, app in client.get_serve_details()["applications"].items():
        deployed = app.get("deployed_app_config")
        if deployed is None:
            if name == app_name:
                raise ReloadError(f"app {app_name!r} was deployed with serve.run(), not from a config, so it cannot "
                                  f"be updated in place: start it with `memroute serve` or `serve run/deploy` a config")
            raise ReloadError(f"app {name!r} on this cluster was deployed with serve.run(); re-applying the Serve "
                              f"config would remove it")
        if name == app_name:
            overrides = [d for d in deployed.get("deployments", []) if d.get("name") != MODEL_DEPLOYMENT]
            own = next((d for d in deployed.get("deployments", []) if d.get("name") == MODEL_DEPLOYMENT), {})
            deployed = {**deployed, "deployments": overrides + [{**own, "name": MODEL_DEPLOYMENT, "user_config": new}]}
        configs.append(deployed)
    client.deploy_apps(ServeDeploySchema(applications=configs))
    wait_for(app_name, new, wait_s)
    return new


def wait_for(app_name: str, user_config: dict, wait_s: float = 600.0) -> None:
    """Until the model deployment is healthy and a run of calls (several per replica) all report `user_config`."""
    from ray import serve

    handle = serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = serve.status().applications[app_name].deployments[MODEL_DEPLOYMENT]
        if status.status == "HEALTHY":
            replicas = max(1, sum(status.replica_states.values()) if status.replica_states else 1)
            if all(handle.info.remote().result(timeout_s=60)["user_config"] == user_config
                   for _ in range(3 * replicas)):
                return
        time.sleep(0.5)
    raise ReloadError(f"app {app_name!r} did not apply {user_config} within {wait_s:.0f} s")
