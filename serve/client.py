"""A small Python client of the routing endpoint.

    from serve.client import RouterClient
    client = RouterClient("http://127.0.0.1:8000", api_key=os.environ["MEMROUTE_API_KEY"])
    client.route([{"role": "user", "content": "Our brand voice is plain and warm."}])   # -> one result dict
    client.route([conv_a, conv_b])                                                      # -> a list of them
    client.health(), client.version()

Errors are `RouterError`s carrying the HTTP status and the server's message. A request that cannot connect is
retried (`retries`, with a short back-off): routing is idempotent, so a retry is safe.
"""

from __future__ import annotations

import time
from typing import Any

import httpx


class RouterError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


def _is_conversation(obj: Any) -> bool:
    return isinstance(obj, list) and bool(obj) and all(isinstance(t, dict) for t in obj)


class RouterClient:
    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 120.0,
                 retries: int = 2):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries

    def route(self, conversation_or_list: list) -> dict | list[dict]:
        """One conversation (a list of {role, content} turns) -> its result; a list of conversations -> results."""
        if _is_conversation(conversation_or_list):
            return self._call("POST", "/route", json={"conversation": conversation_or_list})["results"][0]
        return self._call("POST", "/route", json={"conversations": conversation_or_list})["results"]

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def version(self) -> dict:
        return self._call("GET", "/version")

    def _call(self, method: str, path: str, **kwargs) -> dict:
        for attempt in range(self.retries + 1):
            try:
                resp = self.http.request(method, path, **kwargs)
                break
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
                time.sleep(0.5 * (attempt + 1))
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:500]
            raise RouterError(resp.status_code, message)
        return resp.json()

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
