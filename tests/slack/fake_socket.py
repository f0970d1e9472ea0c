"""Slack's Socket Mode, faked locally for the tests: `apps.connections.open` and the WebSocket.

`FakeSocketSlack` is the fake Web API (`FakeSlack`) plus `apps.connections.open`, which needs the
app-level token and answers `{"ok": true, "url": "ws://127.0.0.1:<port>/link/?ticket=..."}`
pointing at `WebSocketServer`: a minimal RFC 6455 server on the standard library (handshake,
unfragmented text frames, ping/pong, close), enough for slack_sdk's built-in SocketModeClient.
The server greets each connection with Slack's `hello`, sends envelopes the test builds
(`send_envelope`), and records every text frame the client sends back (the acknowledgements).
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.slack.fake_slack import Call, FakeSlack

APP_TOKEN = "xapp-1-A0TEST-1-0123456789abcdef"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketServer:
    def __init__(self) -> None:
        self.acks: list[dict] = []  # every JSON text frame received from a client
        self.connections: list[_Conn] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None

    def start(self) -> "WebSocketServer":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        threading.Thread(target=self._accept, name="fake-slack-ws", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        for c in list(self.connections):
            c.close()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket=t{next(self._ids)}&app_id=A0TEST"

    # -- the test's side ---------------------------------------------------------------------------
    def live(self) -> list["_Conn"]:
        with self._lock:
            return [c for c in self.connections if c.open]

    def wait_connected(self, n: int = 1, timeout: float = 30.0) -> "_Conn":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = self.live()
            if len(live) >= n:
                return live[-1]
            time.sleep(0.02)
        raise AssertionError(f"fake Slack WebSocket: no client connected within {timeout}s")

    def send_envelope(self, kind: str, payload: Any, envelope_id: str | None = None, **extra: Any) -> str:
        envelope_id = envelope_id or f"env-{next(self._ids)}-{time.time_ns()}"
        msg = {"envelope_id": envelope_id, "type": kind, "payload": payload,
               "accepts_response_payload": kind != "events_api", **extra}
        self.send_text(json.dumps(msg))
        return envelope_id

    def send_text(self, text: str) -> None:
        self.wait_connected().send(0x1, text.encode())

    def acks_for(self, envelope_id: str) -> list[dict]:
        with self._lock:
            return [a for a in self.acks if a.get("envelope_id") == envelope_id]

    def wait_ack(self, envelope_id: str, n: int = 1, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            acks = self.acks_for(envelope_id)
            if len(acks) >= n:
                return acks[n - 1]
            time.sleep(0.02)
        raise AssertionError(f"fake Slack WebSocket: no ack #{n} for {envelope_id} within {timeout}s; got {self.acks}")

    # -- serving ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                request += chunk
            head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
            key = headers.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            with self._lock:
                self.paths.append(head[0].split(" ")[1] if " " in head[0] else "")
                self.connections.append(conn)
            conn.send(0x1, json.dumps({"type": "hello", "num_connections": 1,
                                       "debug_info": {"host": "fake"}, "connection_info": {"app_id": "A0TEST"}}).encode())
            while conn.open:
                frame = conn.read_frame()
                if frame is None:
                    break
                opcode, data = frame
                if opcode == 0x1:
                    try:
                        msg = json.loads(data.decode())
                    except ValueError:
                        msg = {"_raw": data.decode(errors="replace")}
                    with self._lock:
                        self.acks.append(msg)
                elif opcode == 0x9:
                    conn.send(0xA, data)
                elif opcode == 0x8:
                    conn.send(0x8, data[:2])
                    break
        except OSError:
            pass
        finally:
            conn.close()


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.open = True
        self._send_lock = threading.Lock()

    def send(self, opcode: int, data: bytes) -> None:
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        with self._send_lock:
            self.sock.sendall(header + data)

    def _exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_frame(self) -> tuple[int, bytes] | None:
        head = self._exact(2)
        if head is None:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        masked = head[1] & 0x80
        if length == 126:
            length = struct.unpack("!H", self._exact(2) or b"\0\0")[0]
        elif length == 127:
            length = struct.unpack("!Q", self._exact(8) or b"\0" * 8)[0]
        mask = self._exact(4) if masked else b"\0\0\0\0"
        data = self._exact(length) if length else b""
        if mask is None or data is None:
            return None
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def close(self) -> None:
        if self.open:
            self.open = False
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


class FakeSocketSlack(FakeSlack):
    """The fake Web API plus `apps.connections.open` (app-level token) and its WebSocket."""

    def __init__(self, app_token: str = APP_TOKEN, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app_token = app_token
        self.ws = WebSocketServer()
        self.socket_url: str | None = None  # set: apps.connections.open returns this URL instead

    def start(self) -> "FakeSocketSlack":
        self.ws.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.ws.stop()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.path.rsplit("/", 1)[-1].split("?", 1)[0]
        if method != "apps.connections.open":
            super()._handle(h)
            return
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode() if length else ""
        params = {k: v[0] for k, v in parse_qs(raw).items()}
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._lock:
            call = Call(method, params, headers, time.monotonic())
            self.calls.append(call)
        token = (headers.get("authorization") or "").removeprefix("Bearer ") or params.get("token")
        if token != self.app_token:
            self._send(h, call, 200, {"ok": False, "error": "invalid_auth"})
        elif token.startswith("xoxb-"):
            self._send(h, call, 200, {"ok": False, "error": "not_allowed_token_type"})
        else:
            self._send(h, call, 200, {"ok": True, "url": self.socket_url or self.ws.url()})
