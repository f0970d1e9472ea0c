"""Errors the service layer raises; REST, admin and Slack map them to clear answers."""


class SlctError(Exception):
    """Base class: a request that cannot be carried out. Nothing was changed."""

    code = "error"


class NotFound(SlctError):
    code = "not_found"


class Conflict(SlctError):
    code = "conflict"


class InvalidInput(SlctError):
    code = "invalid"


class Forbidden(SlctError):
    """The sender may not send into (or close) this channel: its send policy refuses them."""

    code = "forbidden"


class ChannelClosed(Conflict):
    code = "channel_closed"


class NoReceiver(Conflict):
    code = "no_receiver"


class DeclarationError(SlctError):
    """A process method declared something impossible (bad select, bad target, non-JSON value)."""

    code = "declaration"


class QueueUnavailable(SlctError):
    """Redis could not be reached; the database is unchanged and the sweep can run later."""

    code = "queue_unavailable"
