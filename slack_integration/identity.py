"""Who a Slack user is here, and the senders Slack and the admin act as.

A Slack user id is only ever taken from a signature-verified request (the `/slct` form's
`user_id`, an interactivity payload's `user.id`). It is linked to a Django user by a `SlackUser`
row (admin → Slack integration → Slack users) or by `SLACK_USER_MAP`; the Django user's
permissions then decide what `/slct` may do, exactly as for the same person over REST.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q

from slct_workflows.access import Sender

from . import conf

log = logging.getLogger("slack_integration")

# The doors a question's answer may come through (`AnswerSender.via`).
ANSWER_DOORS = ("slack", "admin")


def django_user(slack_user_id: str, team_id: str = "") -> Any | None:
    """The Django user linked to the Slack user (a row for this workspace, then one for any
    workspace, then SLACK_USER_MAP), or None. Inactive users are returned: their permissions
    are empty, and the caller can say why."""
    if not slack_user_id or not conf.SLACK_USER_ID.match(slack_user_id):
        return None
    from .models import SlackUser

    teams = [team_id, ""] if team_id else [""]
    # team_id descending: the row for this workspace wins over an any-workspace row.
    link = (
        SlackUser.objects.filter(Q(slack_user_id=slack_user_id) & Q(team_id__in=teams))
        .select_related("user").order_by("-team_id").first()
    )
    if link is not None:
        return link.user
    mapping = conf.user_map()
    username = mapping.get((team_id, slack_user_id)) if team_id else None
    username = username or mapping.get(("", slack_user_id))
    if username is None:
        return None
    User = get_user_model()
    user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
    if user is None:
        log.warning("SLACK_USER_MAP links %s to %r, but there is no such user", slack_user_id, username)
    return user


@dataclass(frozen=True)
class AnswerSender(Sender):
    """A question's answer, built by the server after it verified who answered. The recorded
    provenance also keeps a display name (the Slack user name from the signed payload, or the
    admin user's full name), so `slack.Result.user_name` needs nothing from the value."""

    name: str = ""

    def provenance(self) -> dict:
        out = super().provenance()
        if self.name:
            out["name"] = self.name[:200]
        return out


def slack_answer(slack_user_id: str, *, user: Any = None, name: str = "") -> AnswerSender:
    """The sender of a click or modal submission by the verified Slack user `slack_user_id`
    (`user`: the Django user it is linked to, if any)."""
    return AnswerSender("slack", user, slack_user_id, True, name)


def admin_answer(user: Any) -> AnswerSender:
    """The sender of an answer given on the admin's Pending questions page."""
    full = getattr(user, "get_full_name", None)
    return AnswerSender("admin", user, "", True, (full() if callable(full) else "") or user.get_username())


def command_sender(user: Any, slack_user_id: str) -> Sender:
    """`/slct send`: the linked Django user's permissions and the channel's policy apply, as
    for the same user over REST."""
    return Sender.slack(user, slack_user_id)
