"""Health, readiness and metrics endpoints, part of the one include a site mounts
(slct_workflows.urls; the demo and README mount it at the root):

    path("", include("slct_workflows.urls")),

/healthz and /readyz are open (load balancers); /metrics needs SLCT_METRICS_TOKEN and/or
SLCT_METRICS_ALLOW (docs/OPERATIONS.md).
"""
from django.urls import re_path

from slct_workflows.read import health, metrics

urlpatterns = [
    re_path(r"^healthz/?$", health.healthz, name="slct-healthz"),
    re_path(r"^readyz/?$", health.readyz, name="slct-readyz"),
    re_path(r"^metrics/?$", metrics.metrics_view, name="slct-metrics"),
]
