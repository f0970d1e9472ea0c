"""Socket Mode: Slack's interactivity and `/slct` over a WebSocket, for apps without a public URL.

`manage.py slack_socket` runs a `SocketMode` (slack_sdk's built-in `SocketModeClient`, no extra
dependency): it asks Slack for a WebSocket URL with the app-level token (`apps.connections.open`
at SLACK_API_URL, authenticated with SLACK_APP_TOKEN), connects, and receives envelopes
`{"envelope_id", "type", "payload"}`. Each envelope goes through exactly what the HTTP endpoints
run after their signature check (`views.handle_interactivity`, `views.handle_command`): the
same parsing (payloads.py; a malformed payload changes nothing), the same services, the same
idempotent delivery (a repeated click or command sends nothing new). The acknowledgement carries
what the HTTP endpoint would answer: nothing for a click, a modal's field errors, the ephemeral
reply of `/slct`.

Trust: Socket Mode payloads are not signed. What is received on the socket comes from Slack
because only Slack hands out the socket's URL, to a caller holding the app-level token, over TLS
(`wss://` on 443; a plain `ws://` URL is refused unless it is a loopback address, which only the
tests use). So SLACK_APP_TOKEN is the secret that guards this door, as the signing secret guards
the HTTP one.

An envelope that is not acknowledged (for example the database was down while it was handled)
is re-sent by Slack; since delivery is idempotent that is safe. An envelope id seen again (a
Slack retry of an envelope that was handled) is answered with the first acknowledgement without
handling it again.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections
from slack_sdk import WebClient
from slack_sdk.socket_mode.builtin import SocketModeClient

from . import conf, views
from .payloads import MAX_ID, BadPayload

log = logging.getLogger("slack_integration")

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


# -- one envelope ---------------------------------------------------------------------------------

def handle(message: Any) -> dict | None:
    """One message received on the socket → the acknowledgement to send back
    (`{"envelope_id": ..., "payload": ...}`), or None for a message that is not an envelope
    (`hello`, ...): nothing to acknowledge. Raises only for unexpected trouble (the database...):
    then nothing is acknowledged and Slack sends the envelope again."""
    if not isinstance(message, dict):
        return None
    envelope_id = message.get("envelope_id")
    if not isinstance(envelope_id, str) or not envelope_id or len(envelope_id) > MAX_ID:
        if envelope_id is not None:
            log.warning("Slack Socket Mode: a message with an unusable envelope_id, ignored")
        return None
    ack: dict = {"envelope_id": envelope_id}
    kind = message.get("type")
    payload = message.get("payload")
    try:
        if kind == "interactive":
            body = views.handle_interactivity(_as_json(payload))
        elif kind == "slash_commands":
            if not isinstance(payload, dict):
                raise BadPayload("payload must be an object")
            body = views.handle_command(payload)
        else:  # events_api and anything newer: acknowledged, not used
            log.info("Slack Socket Mode: envelope of type %r acknowledged and ignored", str(kind)[:50])
            return ack
    except BadPayload as exc:
        # The HTTP endpoints answer 400; here the envelope is acknowledged (so Slack does not
        # send it again) and nothing was changed. A command gets the reason as its reply.
        log.warning("Slack Socket Mode: malformed %s envelope refused: %s", str(kind)[:50], exc)
        if kind == "slash_commands":
            ack["payload"] = {"response_type": "ephemeral", "text": f"malformed Slack request: {exc}"[:300]}
        return ack
    if body is not None:
        ack["payload"] = body
    return ack


def _as_json(payload: Any) -> str:
    """The interactive payload as the JSON text the HTTP endpoint's `payload` field holds, so
    that it goes through the very same parser (and its size and depth limits)."""
    if not isinstance(payload, dict):
        raise BadPayload("payload must be an object")
    try:
        return json.dumps(payload)
    except (TypeError, ValueError, RecursionError):
        raise BadPayload("payload is not JSON") from None


class Acks:
    """The acknowledgements of the last `size` envelopes, by envelope id: an envelope Slack sends
    again is answered the same way without being handled twice (two copies at once: the second
    waits for the first). The database's idempotency keys remain the guarantee; this only spares
    a retry its "already answered" reply."""

    def __init__(self, size: int = 2000) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, list] = OrderedDict()  # id -> [threading.Event, ack | None]

    def run(self, envelope_id: str, work: Callable[[], dict | None], wait: float = 30.0) -> dict | None:
        while True:
            with self._lock:
                entry = self._entries.get(envelope_id)
                mine = entry is None
                if mine:
                    entry = self._entries[envelope_id] = [threading.Event(), None]
                    while len(self._entries) > self.size:
                        self._entries.popitem(last=False)
            if mine:
                try:
                    entry[1] = work()
                except BaseException:
                    with self._lock:  # not handled: a later copy runs it again
                        if self._entries.get(envelope_id) is entry:
                            del self._entries[envelope_id]
                    raise
                finally:
                    entry[0].set()
                return entry[1]
            if not entry[0].wait(wait):
                return None  # the first copy is still running: let Slack send it again later
            if entry[1] is not None:
                return entry[1]
            # the first copy failed (and was forgotten): try again ourselves


# -- the connection ---------------------------------------------------------------------------------

class _Client(SocketModeClient):
    def issue_new_wss_url(self) -> str:
        url = super().issue_new_wss_url()
        check_socket_url(url)
        return url


def check_socket_url(url: Any) -> None:
    """Only a TLS WebSocket (wss:// on 443) carries unsigned payloads we trust; plain ws:// only
    to a loopback address (the tests' fake Slack)."""
    parsed = urlparse(url if isinstance(url, str) else "")
    host = parsed.hostname or ""
    if parsed.scheme == "wss" and (parsed.port in (None, 443)):
        return
    if parsed.scheme in ("ws", "wss") and host in LOOPBACK:
        return
    raise ImproperlyConfigured(
        f"apps.connections.open returned {parsed.scheme}://{host}:{parsed.port or ''}: Socket Mode only "
        "connects over TLS (wss:// on port 443), or to a loopback address")


class SocketMode:
    """A Socket Mode connection whose envelopes reach `handle`. `connect()`, then `close()`."""

    def __init__(self, app_token: str | None = None, *, concurrency: int = 10, ping_interval: float = 5.0) -> None:
        token = conf.app_token() if app_token is None else app_token
        if not token:
            raise ImproperlyConfigured("SLACK_APP_TOKEN is not set: Socket Mode needs the app-level token (xapp-...)")
        web = WebClient(base_url=conf.api_url(), timeout=conf.timeout())
        self.acks = Acks()
        self.handled = 0  # envelopes acknowledged (for logs and tests)
        self.client = _Client(app_token=token, web_client=web, logger=log, concurrency=concurrency,
                              ping_interval=ping_interval)
        self.client.message_listeners.append(self._on_message)

    def connect(self) -> None:
        """Open the connection (raises on a refused app token or a bad URL); the client then
        keeps it open, reconnecting through apps.connections.open when Slack asks or it drops."""
        self.client.connect()
        if not self.client.is_connected():
            raise ConnectionError("could not open the Socket Mode WebSocket (see the log above)")

    def is_connected(self) -> bool:
        return self.client.is_connected()

    def close(self) -> None:
        """Stop receiving; envelopes being handled are finished and acknowledged first."""
        self.client.auto_reconnect_enabled = False
        self.client.closed = True  # no new envelopes are taken from the queue
        self.client.message_workers.shutdown(wait=True)
        self.client.close()

    def _on_message(self, client: SocketModeClient, message: dict, raw: str | None) -> None:
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if not isinstance(envelope_id, str) or not envelope_id:
            handle(message)  # logs what it ignores
            return

        def work() -> dict | None:
            close_old_connections()
            try:
                return handle(message)
            finally:
                close_old_connections()

        try:
            ack = self.acks.run(envelope_id, work)
        except Exception:
            log.exception("Slack Socket Mode: envelope %s failed; not acknowledged (Slack sends it again)",
                          envelope_id[:MAX_ID])
            return
        if ack is not None:
            client.send_socket_mode_response(ack)
            self.handled += 1
