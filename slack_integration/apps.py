from django.apps import AppConfig


class SlackIntegrationConfig(AppConfig):
    name = "slack_integration"
    verbose_name = "Slack integration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from slack_integration import admin_hooks, checks, listeners  # noqa: F401  (checks registers itself)
        from slct_workflows.read import selectors

        listeners.connect()
        # The admin names a question's reply channel "approval “…” in #finance" and links the message.
        selectors.register_channel_describer(
            "question", admin_hooks.describe_reply_channels, names=admin_hooks.open_reply_channels,
        )
