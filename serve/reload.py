"""Hot reload: probe a new adapter, then publish it to every replica of a running app, without downtime.

The adapter is the model deployment's `user_config`. `publish` re-applies the app's own Serve config (the one
`serve.app.deploy`, `serve deploy` or `serve run config.yaml` applied) with only that user_config changed: Serve
sees the same code version and calls `reconfigure` on the live replicas in place, a rolling update of one replica
at a time (Serve's rolling_update_percentage) that keeps every replica in the routing table, so no replica
restarts and there is no gap: requests already in a batch finish on the version they started on, the next batch
runs on the new one (serve.model). The other declaratively deployed apps are re-applied unchanged, since a Serve
config names every app and drops the ones it leaves out.

Probe. Before publishing, `probe` has one model replica (the handle's pick) answer PROBE_CONVERSATIONS with the
candidate, decoded as served, and put its weights back (serve.model: one conversation per hold of the engine, so
that replica's requests wait behind one hold at most, and the others serve). `judge` accepts the candidate when
every answer ended on its own (finish "stop") within the answer cap, parses (data.parser.parse_answer) into
taxonomy labels and nothing else, at most MAX_LABELS of them, and every sampled token's logprob is finite (NaN
weights, from a diverged run or a weight push gone wrong, show there first: the signal RL's push check reads). A
refused candidate never takes traffic: `publish` raises ProbeRefused and the old version keeps serving.

Callers: `memroute serve reload --checkpoint X [--version N]` (prints the probe's verdict; exit 1 on a refusal),
or a training job on the same cluster (`from serve.reload import publish; publish(adapter_dir, version=step)`).
`drain` is the first half of a graceful shutdown (serve.app).
"""

from __future__ import annotations

import time
from pathlib import Path

MODEL_DEPLOYMENT = "RouterModel"
INGRESS_DEPLOYMENT = "RouterIngress"
STATE_METHODS = {MODEL_DEPLOYMENT: "info", INGRESS_DEPLOYMENT: "drain_state"}  # each returns its user_config

# Fixed conversations every candidate answers before it takes traffic: company, user, multi-turn, small talk.
PROBE_CONVERSATIONS = [
    [{"role": "user", "content": "Our brand voice is warm, plain-spoken and never uses exclamation marks."}],
    [{"role": "user", "content": "I run paid social for the EMEA team and report to the CMO."},
     {"role": "assistant", "content": "Noted. What should we look at first?"},
     {"role": "user", "content": "Last week's campaign CPA, it was 20% over target."}],
    [{"role": "user", "content": "Keep your answers short, bullet points only, no preamble."}],
    [{"role": "user", "content": "thanks, that's all for today"}],
]


class ReloadError(RuntimeError):
    pass


class ProbeRefused(ReloadError):
    """The candidate failed its probe and was not published; `verdict` is judge()'s result."""

    def __init__(self, verdict: dict):
        super().__init__(f"probe refused {verdict['checkpoint'] or 'the base model'}: "
                         f"{'; '.join(verdict['problems'])}")
        self.verdict = verdict


def _client():
    from ray.serve.context import _get_global_client

    return _get_global_client()


def current(app_name: str = "memroute", deployment: str = MODEL_DEPLOYMENT) -> dict:
    """A deployment's current user_config (the model's: {"checkpoint", "version", ...})."""
    details = _client().get_serve_details()
    app = details.get("applications", {}).get(app_name)
    if app is None:
        apps = sorted(details.get("applications", {}))
        raise ReloadError(f"no Serve app named {app_name!r} is running (apps: {apps})")
    found = app["deployments"].get(deployment)
    if found is None:
        raise ReloadError(f"app {app_name!r} has no {deployment} deployment: not a memroute app")
    return dict(found["deployment_config"].get("user_config") or {})


def probe(checkpoint: str | Path | None, app_name: str = "memroute", conversations: list | None = None,
          timeout_s: float = 600.0) -> dict:
    """The verdict (judge()) on `checkpoint` (an adapter folder or run dir; None = base model) from one replica
    of `app_name` answering `conversations` (default PROBE_CONVERSATIONS). Nothing is published."""
    from ray import serve

    from serve.config import resolve_checkpoint

    folder = resolve_checkpoint(checkpoint)
    current(app_name)  # a clear error when there is no such app
    handle = serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name)
    conversations = conversations or PROBE_CONVERSATIONS
    result = handle.probe.remote(str(folder.resolve()) if folder else None, conversations).result(
        timeout_s=timeout_s)
    return judge(result, conversations)


def judge(result: dict, conversations: list | None = None) -> dict:
    """`result` (RouterModel.probe's) with a verdict: per answer its labels and problems, and `ok` when none has
    any (the rules are the module docstring's)."""
    from data.parser import parse_answer
    from serve.model import MAX_LABELS

    cap = result["max_tokens"]
    answers, problems = [], []
    for i, answer in enumerate(result["answers"]):
        parsed = parse_answer(answer["text"])
        found = []
        if answer["finish_reason"] != "stop" or answer["completion_tokens"] > cap:
            found.append(f"no end of answer within the cap ({answer['completion_tokens']} tokens of {cap}, "
                         f"finish {answer['finish_reason']})")
        if not parsed.parsed:
            found.append("does not parse into labels")
        elif parsed.unknown:
            found.append(f"holds what is not a label: {parsed.unknown[:3]}")
        if len(parsed.labels) > MAX_LABELS:
            found.append(f"{len(parsed.labels)} labels, over {MAX_LABELS}")
        if not answer["logprobs_finite"]:
            found.append("non-finite logprobs (NaN / inf weights)")
        answers.append({**answer, "labels": parsed.labels, "problems": found,
                        "conversation": conversations[i] if conversations else None})
        problems += [f"answer {i + 1}: {p}" for p in found]
    if not answers:
        problems.append("no answers")
    return {**result, "answers": answers, "ok": not problems, "problems": problems}


def describe(verdict: dict) -> str:
    """The verdict for a person: one line, then one per probe answer."""
    lines = [f"probe of {verdict['checkpoint'] or 'the base model'} on replica {verdict['replica']}: "
             f"{'accepted' if verdict['ok'] else 'REFUSED'} ({len(verdict['answers'])} conversations, answer cap "
             f"{verdict['max_tokens']} tokens, {'constrained' if verdict['constrained'] else 'free'} decoding, "
             f"{verdict['seconds']:.1f} s)"]
    for i, a in enumerate(verdict["answers"], 1):
        text = a["text"] if len(a["text"]) <= 80 else a["text"][:77] + "..."
        lines.append(f"  {i}. {text!r} -> {', '.join(a['labels']) or '(no labels)'} ({a['completion_tokens']} "
                     f"tokens, {a['finish_reason']}, mean logprob {a['mean_logprob']:.3f}): "
                     f"{'; '.join(a['problems']) or 'ok'}")
    return "\n".join(lines)


def publish(checkpoint: str | Path | None, version: int | None = None, app_name: str = "memroute",
            wait_s: float = 600.0, probe_first: bool = True) -> dict:
    """Move every replica of `app_name` to `checkpoint` (an adapter folder or run dir; None = base model;
    "default" = the shipped router) as `version` (default: the current version + 1), once it passed its probe
    (`probe_first`; ProbeRefused otherwise, nothing changed). Blocks until the replicas answer with it; returns
    the new user_config."""
    from serve.config import resolve_checkpoint

    # resolve here: a bad path is an error for the caller, not a failed reconfigure on the replicas
    folder = resolve_checkpoint(checkpoint)
    if probe_first:
        verdict = probe(folder, app_name)
        if not verdict["ok"]:
            raise ProbeRefused(verdict)
    version = int(version) if version is not None else int(current(app_name).get("version", 0)) + 1
    return update(app_name, {"checkpoint": str(folder.resolve()) if folder else None, "version": version}, wait_s)


def update(app_name: str, changes: dict, wait_s: float = 600.0, deployment: str = MODEL_DEPLOYMENT,
           options: dict | None = None) -> dict:
    """Apply `changes` to a deployment's user_config on every replica, in place (the model's: the adapter, or
    the batching / decoding knobs max_batch_size, batch_wait_timeout_s, constrained, samples; the ingress's:
    request_timeout_s, retry_after_s, draining), with `options`, other deployment options Serve changes in place
    (e.g. max_ongoing_requests, max_queued_requests); returns the new user_config once every replica runs it."""
    from ray.serve.schema import ServeDeploySchema

    new = {**current(app_name, deployment), **changes}
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
            overrides = [d for d in deployed.get("deployments", []) if d.get("name") != deployment]
            own = next((d for d in deployed.get("deployments", []) if d.get("name") == deployment), {})
            mine = {**own, **(options or {}), "name": deployment, "user_config": new}
            deployed = {**deployed, "deployments": overrides + [mine]}
        configs.append(deployed)
    client.deploy_apps(ServeDeploySchema(applications=configs))
    wait_for(app_name, new, wait_s, deployment)
    return new


def _replicas(app_name: str, deployment: str) -> int | None:
    """The deployment's replica count when it is HEALTHY, else None."""
    from ray import serve

    status = serve.status().applications[app_name].deployments[deployment]
    if status.status != "HEALTHY":
        return None
    return max(1, sum(status.replica_states.values()) if status.replica_states else 1)


def wait_for(app_name: str, user_config: dict, wait_s: float = 600.0, deployment: str = MODEL_DEPLOYMENT) -> None:
    """Until the deployment is healthy and a run of calls (several per replica) all report `user_config`."""
    from ray import serve

    handle = serve.get_deployment_handle(deployment, app_name)
    method = STATE_METHODS[deployment]
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        replicas = _replicas(app_name, deployment)
        if replicas and all(getattr(handle, method).remote().result(timeout_s=60)["user_config"] == user_config
                            for _ in range(3 * replicas)):
            return
        time.sleep(0.5)
    raise ReloadError(f"app {app_name!r} did not apply {user_config} to {deployment} within {wait_s:.0f} s")


def drain(app_name: str = "memroute", timeout_s: float = 30.0, poll_s: float = 0.25) -> dict:
    """Stop taking requests (the ingress's `draining`: every POST a 503 with Retry-After, /health 503) and wait,
    at most `timeout_s` in all, until no ingress replica has a request in flight. Returns {"in_flight": when the
    drain began, "left": at the end (0 unless the wait ran out), "seconds"}."""
    from ray import serve

    start = time.monotonic()
    update(app_name, {"draining": True}, wait_s=timeout_s, deployment=INGRESS_DEPLOYMENT)
    handle = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name)
    first = left = None
    while True:
        replicas = _replicas(app_name, INGRESS_DEPLOYMENT) or 1
        states = [handle.drain_state.remote().result(timeout_s=10) for _ in range(3 * replicas)]
        left = sum({s["replica"]: s["in_flight"] for s in states}.values())
        first = left if first is None else first
        if left == 0 or time.monotonic() - start >= timeout_s:
            break
        time.sleep(poll_s)
    return {"in_flight": first, "left": left, "seconds": round(time.monotonic() - start, 2)}
