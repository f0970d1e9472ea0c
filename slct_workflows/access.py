"""Who may send into, or close, which channel from outside a step (docs/SECURITY.md).

Steps are trusted code: they send into any channel they name. Everything that comes from outside
(REST, Slack, the admin) carries a `Sender` that the door built from what the server verified
(the authenticated Django user, the signature-checked Slack user), and the service layer checks
it here against the channel's policy, one rule for every door:

* `open` (named channels, the default): holders of the send permission;
* `restricted`: holders of the send permission who also hold the channel's permission and/or
  belong to its group;
* `private` (channels the runtime makes: `p.make_chan`, child results, Slack question replies):
  nobody from outside. A question's answer reaches its private reply channel only as an
  `answer` the server built after verifying who clicked (Slack) or who answered (admin).

Admin sends are operator actions: they need `slct_workflows.operator_send` instead of the REST
send permission, and are recorded with the operator's name like every other send.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slct_workflows.errors import Forbidden
from slct_workflows.models import SendPolicy
from slct_workflows.policy import ChannelPolicy

SEND_PERMISSION = "slct_workflows.add_externalsend"
OPERATOR_PERMISSION = "slct_workflows.operator_send"
CLOSE_PERMISSION = "slct_workflows.change_channel"


@dataclass(frozen=True)
class Sender:
    """Who sends from outside, as the server established it (never read from a request body)."""

    via: str  # rest | slack | admin
    user: Any = None  # the Django user the server authenticated (or mapped from Slack)
    slack_user: str = ""  # the signature-verified Slack user id
    answer: bool = False  # a question's answer the server built after verifying who answered

    @classmethod
    def rest(cls, user: Any) -> "Sender":
        return cls("rest", user)

    @classmethod
    def admin(cls, user: Any) -> "Sender":
        return cls("admin", user)

    @classmethod
    def slack(cls, user: Any, slack_user: str) -> "Sender":
        return cls("slack", user, slack_user)

    @classmethod
    def answering(cls, via: str, *, user: Any = None, slack_user: str = "") -> "Sender":
        return cls(via, user, slack_user, answer=True)

    def provenance(self) -> dict:
        """What the send's record and the receiver's history keep of the sender."""
        out: dict[str, Any] = {"via": self.via}
        if self.user is not None and getattr(self.user, "is_authenticated", False):
            out["user"] = self.user.get_username()
            out["user_id"] = self.user.pk
        if self.slack_user:
            out["slack_user"] = self.slack_user
        if self.answer:
            out["answer"] = True
        return out

    def has_perm(self, perm: str) -> bool:
        user = self.user
        return bool(user is not None and getattr(user, "is_active", False) and user.has_perm(perm))

    def in_group(self, group: str) -> bool:
        user = self.user
        if user is None or not getattr(user, "is_active", False):
            return False
        return bool(user.is_superuser) or user.groups.filter(name=group).exists()


def effective_policy(channel: Any) -> ChannelPolicy:
    """The declared policy of a named channel wins over the row's (a workflow can restrict a name
    that REST made first); channels the runtime made keep the policy they were made with."""
    from slct_workflows.definitions import registry

    declared = registry.channel_policy(channel.name) if not channel.owner else None
    if declared is not None:
        return declared
    return ChannelPolicy(channel.policy, channel.send_permission, channel.send_group)


def check(channel: Any, sender: Sender | None, action: str = "send") -> None:
    """Raise Forbidden unless `sender` may `action` ("send" or "close") on `channel`.
    `sender=None` is trusted server code (a step's helper, a management command, a test)."""
    if sender is None:
        return
    policy = effective_policy(channel)
    name = channel.name
    if sender.answer:
        if action == "send" and policy.policy == SendPolicy.PRIVATE:
            return  # the server's own answer into a question's reply channel
        raise Forbidden(f"answers only go into a question's reply channel; {name!r} is not one")
    if policy.policy == SendPolicy.PRIVATE:
        owner = f" (made by process {channel.owner})" if channel.owner else ""
        raise Forbidden(f"channel {name!r} is private{owner}: only its processes send into or close it")
    if action == "close":
        base = CLOSE_PERMISSION
    else:
        base = OPERATOR_PERMISSION if sender.via == "admin" else SEND_PERMISSION
    if not sender.has_perm(base):
        raise Forbidden(f"you need the permission {base} to {action} into channel {name!r}"
                        if action == "send" else f"you need the permission {base} to close channel {name!r}")
    if policy.policy == SendPolicy.RESTRICTED:
        if policy.permission and not sender.has_perm(policy.permission):
            raise Forbidden(f"channel {name!r} is {policy.describe()}")
        if policy.group and not sender.in_group(policy.group):
            raise Forbidden(f"channel {name!r} is {policy.describe()}")
