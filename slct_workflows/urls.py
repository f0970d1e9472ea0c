"""Every URL of SLCT in one include, for a site's URLconf:

    path("", include("slct_workflows.urls")),        # or under a prefix: path("slct/", ...)

    api/          the REST API (docs/API.md), its schema and docs page
    slack/        Slack's interactivity and slash-command endpoints (when slack_integration is installed)
    django-rq/    django-rq's dashboard, superusers only (slct_workflows.rq_dashboard)
    healthz/, readyz/, metrics/   health, readiness, Prometheus (docs/OPERATIONS.md)

The site mounts the admin itself (`path("admin/", admin.site.urls)`); django-rq's entry in it is
made superuser-only when the apps load (SlctWorkflowsConfig.ready; again here, harmlessly).
"""
from django.apps import apps
from django.urls import include, path
from django_rq import urls as django_rq_urls

from slct_workflows.rq_dashboard import guard_admin_entry, superuser_only

guard_admin_entry()

urlpatterns = [
    path("api/", include("slct_workflows.api.urls")),
    path("django-rq/", include((superuser_only(django_rq_urls.urlpatterns), django_rq_urls.app_name))),
    path("", include("slct_workflows.health_urls")),
]
if apps.is_installed("slack_integration"):
    urlpatterns.insert(1, path("slack/", include("slack_integration.urls")))
