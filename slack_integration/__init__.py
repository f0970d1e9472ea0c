"""Slack for SLCT processes: `from slack_integration import slack`, then `slack.approve(p, ...)`,
`slack.ask`, `slack.choose`, `slack.post` inside a step (see slack_integration/slack.py and
docs/SLACK.md)."""
