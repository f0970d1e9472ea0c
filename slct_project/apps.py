from django.apps import AppConfig


class SlctProjectConfig(AppConfig):
    name = "slct_project"
    verbose_name = "SLCT demo project"
