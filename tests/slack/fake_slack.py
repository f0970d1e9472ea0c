"""A local HTTP server that plays Slack's Web API for the tests.

It runs in a thread of the test process; the real slack_sdk WebClient (in the test process or in
an RQ worker subprocess) talks to it over HTTP when SLACK_API_URL points at `fake.url`. It records
every call (method, parameters, headers, time) and answers like Slack: `chat.postMessage` returns
a channel id and a `ts`, `chat.update` needs an existing (channel, ts), `views.open` a trigger id.
`fail_next()` makes the next call(s) to a method fail, e.g. a 429 with Retry-After; `delay()`
makes a method slow.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "xoxb-test-token"


@dataclass
class Call:
    method: str
    params: dict
    headers: dict
    at: float  # time.monotonic()
    status: int = 200
    response: dict = field(default_factory=dict)


@dataclass
class Failure:
    status: int
    headers: dict
    body: dict


class FakeSlack:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict] = {}  # (channel id, ts) -> latest {"text", "blocks"}
        self._failures: dict[str, list[Failure]] = {}
        self._delays: dict[str, float] = {}
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> "FakeSlack":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-slack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/"

    def fail_next(self, method: str, *, status: int = 429, headers: dict | None = None,
                  body: dict | None = None, times: int = 1) -> None:
        if status == 429:
            headers = {"Retry-After": "1", **(headers or {})}
            body = body or {"ok": False, "error": "ratelimited"}
        with self._lock:
            for _ in range(times):
                self._failures.setdefault(method, []).append(
                    Failure(status, headers or {}, body or {"ok": False, "error": "internal_error"})
                )

    def delay(self, method: str, seconds: float) -> None:
        self._delays[method] = seconds

    # -- looking -----------------------------------------------------------------------------------
    def calls_to(self, method: str, *, ok_only: bool = False) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (not ok_only or c.status == 200 and c.response.get("ok"))]

    def wait_for(self, method: str, n: int = 1, timeout: float = 30.0, ok_only: bool = True) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.calls_to(method, ok_only=ok_only)
            if len(calls) >= n:
                return calls
            time.sleep(0.05)
        raise AssertionError(f"fake Slack: expected {n} call(s) to {method} within {timeout}s, got "
                             f"{[(c.method, c.status) for c in self.calls]}")

    # -- serving -----------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.path.rsplit("/", 1)[-1].split("?", 1)[0]
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode() if length else ""
        ctype = h.headers.get("Content-Type", "")
        if "json" in ctype:
            params = json.loads(raw or "{}")
        else:
            params = {k: v[0] for k, v in parse_qs(raw).items()}
        for k in ("blocks", "view"):  # form-encoded calls carry JSON strings
            if isinstance(params.get(k), str):
                params[k] = json.loads(params[k])
        headers = {k.lower(): v for k, v in h.headers.items()}
        if method in self._delays:
            time.sleep(self._delays[method])
        with self._lock:
            call = Call(method, params, headers, time.monotonic())
            self.calls.append(call)
            failures = self._failures.get(method)
            failure = failures.pop(0) if failures else None
        if failure is not None:
            self._send(h, call, failure.status, failure.body, failure.headers)
            return
        if headers.get("authorization") != f"Bearer {self.token}":
            self._send(h, call, 200, {"ok": False, "error": "invalid_auth"})
            return
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            self._send(h, call, 200, {"ok": False, "error": "unknown_method"})
            return
        self._send(h, call, 200, handler(params))

    def _send(self, h: BaseHTTPRequestHandler, call: Call, status: int, body: dict, headers: dict | None = None) -> None:
        call.status, call.response = status, body
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def channel_id(channel: str) -> str:
        if channel.startswith(("C", "G", "D")) and channel.isupper():
            return channel
        return "C" + "".join(ch for ch in channel.upper() if ch.isalnum())

    def _api_auth_test(self, params: dict) -> dict:
        return {"ok": True, "team": "Acme", "user": "slct", "team_id": "T1", "user_id": "UBOT", "bot_id": "B1"}

    def _api_chat_postMessage(self, params: dict) -> dict:
        channel = params.get("channel") or ""
        if not channel or channel == "#nowhere":
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        cid = self.channel_id(channel)
        n = next(self._ts)
        ts = f"{1700000000 + n}.{n:06d}"
        with self._lock:
            self.messages[(cid, ts)] = {"text": params.get("text"), "blocks": params.get("blocks") or []}
        return {"ok": True, "channel": cid, "ts": ts,
                "message": {"type": "message", "text": params.get("text"), "ts": ts, "bot_id": "B1"}}

    def _api_chat_update(self, params: dict) -> dict:
        key = (params.get("channel") or "", params.get("ts") or "")
        with self._lock:
            if key not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[key] = {"text": params.get("text"), "blocks": params.get("blocks") or []}
        return {"ok": True, "channel": key[0], "ts": key[1], "text": params.get("text")}

    def _api_chat_postEphemeral(self, params: dict) -> dict:
        if not params.get("channel") or not params.get("user"):
            return {"ok": False, "error": "invalid_arguments"}
        n = next(self._ts)
        return {"ok": True, "message_ts": f"{1700000000 + n}.{n:06d}"}

    def _api_views_open(self, params: dict) -> dict:
        if not params.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = params.get("view") or {}
        return {"ok": True, "view": {"id": f"V{next(self._ts)}", **view}}
