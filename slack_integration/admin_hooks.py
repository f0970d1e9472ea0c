"""What the SLCT admin shows for a Slack question's reply channel (registered from apps.ready into
slct_workflows.read.selectors, which imports nothing of this app)."""
from __future__ import annotations

from django.urls import NoReverseMatch, reverse

KIND_WORDS = {"approve": "approval", "ask": "question", "choose": "choice", "post": "message"}


def _quote(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_reply_channels(names):
    from slct_workflows.read.selectors import ChannelRole

    from .models import SlackMessage

    out = {}
    for m in SlackMessage.objects.filter(reply_channel__in=list(names)).only(
        "id", "kind", "text", "channel", "reply_channel", "status"
    ):
        try:
            url = reverse("admin:slack_integration_slackmessage_change", args=[m.pk])
        except NoReverseMatch:  # pragma: no cover - admin not mounted
            url = ""
        where = f" in {m.channel}" if m.channel else ""
        kind = KIND_WORDS.get(m.kind, m.kind)
        out[m.reply_channel] = ChannelRole(
            kind="question", words=f"{kind} “{_quote(m.text, 80)}”{where}",
            short=f"{kind} “{_quote(m.text, 28)}”{where}", url=url,
        )
    return out


def open_reply_channels():
    from .models import SlackMessage

    return SlackMessage.objects.exclude(reply_channel__isnull=True).exclude(reply_channel="").values("reply_channel")
