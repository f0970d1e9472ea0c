"""REST API routes, mounted at /api/ (see docs/API.md).

Process ids, channel names and send keys may contain `/`, so they use the `path` converter; the
sub-resources (`history/`, `cancel/`, `send/`, ...) are listed before the detail routes.
"""
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from . import views
from .exceptions import not_found_view

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="slct-api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="slct-api-schema"), name="slct-api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="slct-api-schema"), name="slct-api-redoc"),
    path("definitions/", views.DefinitionListView.as_view(), name="slct-api-definitions"),
    path("definitions/<path:name>/", views.DefinitionDetailView.as_view(), name="slct-api-definition"),
    path("processes/", views.ProcessListView.as_view(), name="slct-api-processes"),
    path("processes/<path:pk>/history/", views.ProcessHistoryView.as_view(), name="slct-api-process-history"),
    path("processes/<path:pk>/cancel/", views.ProcessCancelView.as_view(), name="slct-api-process-cancel"),
    path("processes/<path:pk>/retry/", views.ProcessRetryView.as_view(), name="slct-api-process-retry"),
    path("processes/<path:pk>/", views.ProcessDetailView.as_view(), name="slct-api-process"),
    path("channels/", views.ChannelListView.as_view(), name="slct-api-channels"),
    path("channels/<path:name>/send/", views.ChannelSendView.as_view(), name="slct-api-channel-send"),
    path("channels/<path:name>/close/", views.ChannelCloseView.as_view(), name="slct-api-channel-close"),
    path("channels/<path:name>/", views.ChannelDetailView.as_view(), name="slct-api-channel"),
    path("sends/<path:key>/", views.SendDetailView.as_view(), name="slct-api-send"),
    re_path(r"^.*$", not_found_view),
]
