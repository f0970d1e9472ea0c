"""Mounted at slack/ by slct_workflows.urls (when this app is installed)."""
from django.urls import path

from . import views

app_name = "slack_integration"

urlpatterns = [
    path("interactivity/", views.interactivity, name="interactivity"),
    path("commands/", views.commands, name="commands"),
]
