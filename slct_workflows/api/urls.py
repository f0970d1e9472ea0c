"""REST API routes, mounted at /api/ (see docs/API.md).

Process ids and channel names match exactly the name rule of slct_workflows.values (no `/`), so a
name is one path segment and `processes/<id>/history/` can never be read as a process id. Send
keys may contain `/`: no route lies below `sends/<key>/`.
"""
from django.urls import path, re_path, register_converter
from django.urls.converters import StringConverter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from slct_workflows.api import views
from slct_workflows.api.exceptions import not_found_view
from slct_workflows.values import KEY_PATTERN, NAME_PATTERN


class NameConverter(StringConverter):
    regex = NAME_PATTERN


class KeyConverter(StringConverter):
    regex = KEY_PATTERN


register_converter(NameConverter, "slct_name")
register_converter(KeyConverter, "slct_key")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="slct-api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="slct-api-schema"), name="slct-api-docs"),
    path("definitions/", views.DefinitionListView.as_view(), name="slct-api-definitions"),
    path("definitions/<slct_name:name>/", views.DefinitionDetailView.as_view(), name="slct-api-definition"),
    path("processes/", views.ProcessListView.as_view(), name="slct-api-processes"),
    path("processes/<slct_name:pk>/history/", views.ProcessHistoryView.as_view(), name="slct-api-process-history"),
    path("processes/<slct_name:pk>/cancel/", views.ProcessCancelView.as_view(), name="slct-api-process-cancel"),
    path("processes/<slct_name:pk>/retry/", views.ProcessRetryView.as_view(), name="slct-api-process-retry"),
    path("processes/<slct_name:pk>/resume/", views.ProcessResumeView.as_view(), name="slct-api-process-resume"),
    path("processes/<slct_name:pk>/", views.ProcessDetailView.as_view(), name="slct-api-process"),
    path("channels/", views.ChannelListView.as_view(), name="slct-api-channels"),
    path("channels/<slct_name:name>/send/", views.ChannelSendView.as_view(), name="slct-api-channel-send"),
    path("channels/<slct_name:name>/close/", views.ChannelCloseView.as_view(), name="slct-api-channel-close"),
    path("channels/<slct_name:name>/", views.ChannelDetailView.as_view(), name="slct-api-channel"),
    path("sends/<slct_key:key>/", views.SendDetailView.as_view(), name="slct-api-send"),
    re_path(r"^[\s\S]*$", not_found_view),
]
