from django.apps import AppConfig


class SlctWorkflowsConfig(AppConfig):
    name = "slct_workflows"
    verbose_name = "SLCT workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Like admin.py: every installed app's `workflows` module registers its definitions.
        from django.utils.module_loading import autodiscover_modules

        from . import conf
        from .definitions import load_modules

        autodiscover_modules("workflows")
        load_modules(conf.workflow_modules())
