"""A small TCP proxy that a test can cut: the database "unreachable" without stopping the shared
PostgreSQL server. Runs as its own process (the workers' traffic does not queue behind the test
process's GIL):

    python -m tests.reliability.tcp_proxy LISTEN_PORT TARGET_HOST TARGET_PORT

SIGUSR1 cuts: every open connection is closed (the clients see "server closed the connection")
and the listening socket too (new connections are refused). SIGUSR2 listens again. SIGTERM ends
it. `TcpProxy` drives one from a test.
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def serve(listen_port: int, target: tuple[str, int]) -> None:
    sel = selectors.DefaultSelector()
    state = {"cut": False, "restore": False, "stop": False}
    pairs: dict[socket.socket, socket.socket] = {}

    def listen() -> socket.socket:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", listen_port))
        server.listen(128)
        server.setblocking(False)
        sel.register(server, selectors.EVENT_READ, "accept")
        return server

    def drop(sock: socket.socket) -> None:
        other = pairs.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            pairs.pop(s, None)
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    signal.signal(signal.SIGUSR1, lambda *_: state.update(cut=True))
    signal.signal(signal.SIGUSR2, lambda *_: state.update(restore=True))
    signal.signal(signal.SIGTERM, lambda *_: state.update(stop=True))
    server: socket.socket | None = listen()
    print("listening", flush=True)
    while not state["stop"]:
        if state["cut"]:
            state["cut"] = False
            for sock in list(pairs):
                if sock in pairs:
                    drop(sock)
            if server is not None:
                sel.unregister(server)
                server.close()
                server = None
            print("cut", flush=True)
        if state["restore"]:
            state["restore"] = False
            if server is None:
                server = listen()
            print("restored", flush=True)
        for key, _ in sel.select(timeout=0.05):
            sock = key.fileobj
            if key.data == "accept":
                try:
                    client, _addr = sock.accept()
                except OSError:
                    continue
                try:
                    upstream = socket.create_connection(target, timeout=5)
                except OSError:
                    client.close()
                    continue
                for s in (client, upstream):
                    s.setblocking(False)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pairs[client], pairs[upstream] = upstream, client
                sel.register(client, selectors.EVENT_READ, "data")
                sel.register(upstream, selectors.EVENT_READ, "data")
                continue
            if sock not in pairs:
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                drop(sock)
                continue
            try:
                pairs[sock].setblocking(True)
                pairs[sock].sendall(data)
                pairs[sock].setblocking(False)
            except OSError:
                drop(sock)
    for sock in list(pairs):
        if sock in pairs:
            drop(sock)


class TcpProxy:
    """Start, cut, restore and stop a proxy process from a test."""

    def __init__(self, listen_port: int, target_host: str, target_port: int, logfile: Path) -> None:
        self.port = listen_port
        self.logfile = logfile
        root = Path(__file__).resolve().parent.parent.parent
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.tcp_proxy", str(listen_port), target_host, str(target_port)],
            cwd=root, stdout=open(logfile, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_for("listening", 1)

    def _wait_for(self, word: str, count: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.logfile.read_text().count(word) >= count:
                return
            assert self.proc.poll() is None, f"the proxy died: {self.logfile.read_text()}"
            time.sleep(0.02)
        raise AssertionError(f"the proxy did not say {word!r}: {self.logfile.read_text()}")

    def cut(self) -> None:
        n = self.logfile.read_text().count("cut")
        os.kill(self.proc.pid, signal.SIGUSR1)
        self._wait_for("cut", n + 1)

    def restore(self) -> None:
        n = self.logfile.read_text().count("restored")
        os.kill(self.proc.pid, signal.SIGUSR2)
        self._wait_for("restored", n + 1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


if __name__ == "__main__":
    serve(int(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))
