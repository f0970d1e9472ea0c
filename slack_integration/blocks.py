"""Block Kit for the helpers' messages, built with slack_sdk's block models.

Interactive elements carry `block_id = "slct:<message id>"`; action ids start with `slct_`:
`slct_approve`, `slct_reject`, `slct_choose_<i>` (buttons) or `slct_choose` (a select, for more
than five options), `slct_ask_open` (opens the answer modal; its callback id is `slct_ask`).
"""
from __future__ import annotations

from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from .models import Kind, SlackMessage, Status

BLOCK_PREFIX = "slct:"
APPROVE, REJECT, CHOOSE, ASK_OPEN = "slct_approve", "slct_reject", "slct_choose", "slct_ask_open"
ASK_CALLBACK, ANSWER_BLOCK, ANSWER_ACTION = "slct_ask", "slct_answer", "slct_answer"
MAX_BUTTONS = 5
SECTION_LIMIT = 3000


def block_id(message: SlackMessage) -> str:
    return f"{BLOCK_PREFIX}{message.pk}"


def message_id_from_block(value: str | None) -> int | None:
    if not value or not value.startswith(BLOCK_PREFIX):
        return None
    try:
        return int(value[len(BLOCK_PREFIX):])
    except ValueError:
        return None


def _clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str, limit: int = 75) -> str:
    return _clip(text, limit)


def slack_date(when: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """Slack renders it in the reader's own time zone; the fallback is UTC."""
    return f"<!date^{int(when.timestamp())}^{fmt}|{when:%Y-%m-%d %H:%M} UTC>"


def who(message: SlackMessage) -> str:
    if message.answered_via == "slack" and message.answered_by:
        return f"<@{message.answered_by}>"
    name = message.answered_by_name or message.answered_by or "someone"
    return f"{name} (in the admin)" if message.answered_via == "admin" else name


def outcome_line(message: SlackMessage) -> str:
    """One line saying what became of the question (for chat.update and ephemeral replies)."""
    answer = message.answer if isinstance(message.answer, dict) else {}
    if message.status == Status.ANSWERED:
        if message.kind == Kind.APPROVE:
            if answer.get("approved"):
                return f":white_check_mark: Approved by {who(message)}"
            return f":x: Rejected by {who(message)}"
        if message.kind == Kind.CHOOSE:
            label = message.option_label(answer.get("choice"))
            return f":ballot_box_with_check: {who(message)} chose *{label}*"
        if message.kind == Kind.ASK:
            text = str(answer.get("text") or "")
            quoted = "\n".join(f">{line}" for line in _clip(text, 2500).splitlines()) or ">"
            return f":speech_balloon: {who(message)} answered:\n{quoted}"
        return f"Answered by {who(message)}"
    if message.status == Status.TIMED_OUT:
        return ":hourglass: Timed out: no answer came in time"
    if message.status == Status.CANCELLED:
        return ":no_entry_sign: Cancelled: the process was cancelled"
    if message.status == Status.CLOSED:
        return ":fast_forward: Closed: the process went on without this answer"
    return ""


def _context(message: SlackMessage) -> list[str]:
    bits = []
    if message.approvers:
        bits.append("Only " + ", ".join(f"<@{a}>" for a in message.approvers) + " can answer")
    if message.deadline:
        bits.append(f"Answer by {slack_date(message.deadline)}")
    return bits


def _actions(message: SlackMessage) -> ActionsBlock | None:
    bid = block_id(message)
    if message.kind == Kind.APPROVE:
        return ActionsBlock(block_id=bid, elements=[
            ButtonElement(text="Approve", action_id=APPROVE, value="approve", style="primary"),
            ButtonElement(text="Reject", action_id=REJECT, value="reject", style="danger"),
        ])
    if message.kind == Kind.CHOOSE:
        options = message.options or []
        if len(options) <= MAX_BUTTONS:
            return ActionsBlock(block_id=bid, elements=[
                ButtonElement(text=_plain(o["label"]), action_id=f"{CHOOSE}_{i}", value=str(i))
                for i, o in enumerate(options)
            ])
        return ActionsBlock(block_id=bid, elements=[
            StaticSelectElement(
                action_id=CHOOSE, placeholder="Choose…",
                options=[Option(value=str(i), label=_plain(o["label"])) for i, o in enumerate(options)],
            )
        ])
    if message.kind == Kind.ASK:
        return ActionsBlock(block_id=bid, elements=[
            ButtonElement(text="Answer…", action_id=ASK_OPEN, value="answer", style="primary"),
        ])
    return None


def render(message: SlackMessage) -> tuple[str, list[dict]]:
    """(notification text, blocks) for the message in its current state: buttons while the
    question is open, the outcome instead of the buttons once it is closed."""
    text = message.text
    blocks: list = [SectionBlock(text=MarkdownTextObject(text=_clip(text)))]
    if message.kind == Kind.POST:
        return text, [b.to_dict() for b in blocks]
    if message.status == Status.OPEN:
        bits = _context(message)
        if bits:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=" · ".join(bits))]))
        actions = _actions(message)
        if actions is not None:
            blocks.append(actions)
        return text, [b.to_dict() for b in blocks]
    line = outcome_line(message)
    blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(line))))
    return f"{text}\n{line}", [b.to_dict() for b in blocks]


def answer_modal(message: SlackMessage) -> dict:
    """The modal `slct_ask_open` opens with views.open; private_metadata carries the message id."""
    return View(
        type="modal", callback_id=ASK_CALLBACK, private_metadata=str(message.pk),
        title="Answer", submit="Send", close="Cancel",
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=_clip(message.text))),
            InputBlock(
                block_id=ANSWER_BLOCK, label="Your answer",
                element=PlainTextInputElement(action_id=ANSWER_ACTION, multiline=True, max_length=3000),
            ),
        ],
    ).to_dict()
