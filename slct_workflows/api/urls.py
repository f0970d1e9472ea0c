"""REST API routes, mounted at /api/ (see docs/API.md).

Process ids, channel names and send keys may contain `/`, so they use a `path`-like converter; the
sub-resources (`history/`, `cancel/`, `send/`, ...) are listed before the detail routes.
"""
from django.urls import path, re_path, register_converter
from django.urls.converters import PathConverter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views
from .exceptions import not_found_view


class AnyPathConverter(PathConverter):
    """Like `path`, but also matches names containing newlines (steps may make such channels)."""

    regex = r"[\s\S]+"


register_converter(AnyPathConverter, "slct_name")

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
    path("sends/<slct_name:key>/", views.SendDetailView.as_view(), name="slct-api-send"),
    re_path(r"^[\s\S]*$", not_found_view),
]
