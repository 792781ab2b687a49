"""A local fake of Cohere's V2 chat API, for tests: http.server on 127.0.0.1, a free port, in a daemon thread.

It serves `POST /v2/chat` (the route cohere.ClientV2.chat calls: cohere/v2/raw_client.py) and answers with the
V2ChatResponse JSON shape: {"id", "finish_reason", "message": {"role", "content": [{"type": "text", "text"}]},
"usage": {"billed_units": {...}, "tokens": {...}}}.

By default it plays a competent teacher:
- a conversation-writing request (generate.py): a conversation of the requested turns whose first user turn
  names the target labels ("Signals: a, b.") and whose turns are otherwise random words, so no two are alike;
- a labelling request (label.py): the labels named in the conversation's "Signals:" line, with a rationale;
- a router request (data.prompt's SYSTEM_PROMPT): `router_answers[conversation text]`, else "none".

`script([...])` queues actions used by the next requests in arrival order, then it goes back to the default:
    "ok" | "429" | "500" | "503" | "401" | "drop" (close the connection without answering) | "sleep:S" (answer
    after S seconds) | "bad_json" | "unknown_label" | "none_mixed" | "empty_conversation" | "bad_roles" |
    "text:<answer text>"
`delay` slows every answer; requests numbered `hold_after` and later wait until `release` is set (a run to kill
mid-way, at a known point). `requests` records every request (path, JSON body, Authorization header).
"""

from __future__ import annotations

import collections
import json
import random
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from data.prompt import SYSTEM_PROMPT
from data.taxonomy import CATEGORIES, NONE

CANNED = {
    "bad_json": "Sure! Here you go: {labels: [company.brand_core",
    "unknown_label": json.dumps({"labels": ["company.vibes"], "rationale": "made up"}),
    "none_mixed": json.dumps({"labels": [NONE, "user.role_context"], "rationale": "both"}),
    "empty_conversation": json.dumps({"conversation": []}),
    "bad_roles": json.dumps({"conversation": [{"role": "system", "content": "You are a bot."},
                                              {"role": "user", "content": "Hi"}]}),
}
_DESCRIPTION_TO_LABEL = {c.description: c.name for c in CATEGORIES}


class FakeCohere:
    def __init__(self, delay: float = 0.0, usage: tuple[int, int] = (100, 50)):
        self.delay, self.usage = delay, usage
        self.hold_after: int | None = None
        self.release = threading.Event()
        self.requests: list[dict] = []
        self.router_answers: dict[str, str] = {}
        self._script: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._rng = random.Random(0)
        self._server: ThreadingHTTPServer | None = None

    # -- control ------------------------------------------------------------------------------------------
    def script(self, actions) -> None:
        with self._lock:
            self._script.extend(actions)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeCohere":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                fake._handle(self)

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # a client that timed out and left: fine
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- serving ------------------------------------------------------------------------------------------
    def _next_action(self) -> tuple[str, int]:
        with self._lock:
            return (self._script.popleft() if self._script else "ok"), len(self.requests) - 1  # 0-based number

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers.get("content-length", 0))) or b"{}")
        with self._lock:
            self.requests.append({"path": h.path, "body": body, "authorization": h.headers.get("authorization")})
        action, n = self._next_action()
        if h.path != "/v2/chat":
            return self._send(h, 404, {"message": f"no route {h.path}"})
        if self.delay:
            time.sleep(self.delay)
        if self.hold_after is not None and n >= self.hold_after:
            self.release.wait(timeout=60)
        if action == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if action.isdigit():
            return self._send(h, int(action), {"message": f"fake error {action}"})
        if action.startswith("sleep:"):
            time.sleep(float(action.split(":", 1)[1]))
            action = "ok"
        text = action[5:] if action.startswith("text:") else CANNED.get(action) or self._answer(body, n)
        self._send(h, 200, {
            "id": f"fake-{n}", "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "usage": {"billed_units": {"input_tokens": self.usage[0], "output_tokens": self.usage[1]},
                      "tokens": {"input_tokens": self.usage[0] + 10, "output_tokens": self.usage[1]}},
        })

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    # -- the default teacher ------------------------------------------------------------------------------
    def _answer(self, body: dict, n: int) -> str:
        messages = body.get("messages", [])
        system = messages[0]["content"] if messages else ""
        user = messages[-1]["content"] if messages else ""
        if system == SYSTEM_PROMPT:
            conversation = user.split("Conversation:\n", 1)[-1].rsplit("\n\nMemory categories?", 1)[0]
            return self.router_answers.get(conversation, NONE)
        schema = (body.get("response_format") or {}).get("json_schema") or {}
        if "conversation" in schema.get("properties", {}):
            return json.dumps({"conversation": self._conversation(user, n)})
        signals = re.search(r"Signals: ([\w., ]+?)\.(?:\s|$)", user)
        labels = signals.group(1).split(", ") if signals else [NONE]
        return json.dumps({"labels": labels, "rationale": f"the user's messages signal {', '.join(labels)}"})

    def _conversation(self, prompt: str, n: int) -> list[dict]:
        turns = int(re.search(r"exactly (\d+) turns", prompt).group(1))
        labels = [label for desc, label in _DESCRIPTION_TO_LABEL.items() if f"- {desc}" in prompt] or [NONE]
        with self._lock:
            words = [[f"w{self._rng.getrandbits(40):x}" for _ in range(8)] for _ in range(turns)]
        out = []
        for i in range(turns):
            content = " ".join(words[i])
            if i == 0:
                content = f"Request {n}. Signals: {', '.join(labels)}. {content}"
            out.append({"role": "user" if i % 2 == 0 else "assistant", "content": content})
        return out
