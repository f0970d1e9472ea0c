from django.apps import AppConfig


class SlctWorkflowsConfig(AppConfig):
    name = "slct_workflows"
    verbose_name = "SLCT workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Like admin.py: every installed app's `workflows` module registers its definitions.
        from django.utils.module_loading import autodiscover_modules

        from slct_workflows import conf
        from slct_workflows.definitions import load_modules

        autodiscover_modules("workflows")
        load_modules(conf.workflow_modules())

        from slct_workflows.rq_dashboard import guard_admin_entry

        guard_admin_entry()  # django-rq's admin entry for superusers only, before any URLconf builds the admin's URLs

        from slct_workflows import schedules  # noqa: F401  (registers the "schedules" maintenance task)

        from slct_workflows import retention  # noqa: F401  registers the "retention" maintenance task
