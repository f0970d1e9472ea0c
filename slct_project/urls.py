from __future__ import annotations

from functools import wraps

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.urls import URLPattern, URLResolver, include, path, reverse, reverse_lazy
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET
from django.views.generic import RedirectView
from django_rq import urls as django_rq_urls
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard


# -- django-rq: superusers only -------------------------------------------------------------------
# Its views let any staff user empty or requeue queues and delete jobs (the periodic sweep job
# included), and its stats/metrics views take any staff session. Queue surgery bypasses every
# guarantee the service layer keeps, so every one of its views, at /django-rq/ and under the admin
# (/admin/django_rq/dashboard/), is for superusers only: anonymous users are sent to the login
# page, other users get 403. (Its RQ_API_TOKEN bearer access is closed with it: monitoring reads
# the project's own /metrics.)

def superuser_required(view):
    @wraps(view)
    def guarded(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not (user.is_active and user.is_superuser):
            raise PermissionDenied("the job queue dashboard (django-rq) is for superusers only")
        return view(request, *args, **kwargs)

    guarded.slct_superuser_only = True
    return guarded


def superuser_only(patterns: list) -> list:
    """The same URL patterns, each view wrapped in `superuser_required` (nested includes too)."""
    guarded = []
    for p in patterns:
        if isinstance(p, URLResolver):
            guarded.append(URLResolver(p.pattern, superuser_only(p.url_patterns), p.default_kwargs,
                                       p.app_name, p.namespace))
        elif isinstance(p, URLPattern):
            guarded.append(URLPattern(p.pattern, superuser_required(p.callback), p.default_args, p.name))
        else:  # pragma: no cover - Django has no third kind
            raise TypeError(f"cannot guard URL entry {p!r}")
    return guarded


class SuperuserQueueAdmin(QueueAdmin):
    """django-rq's admin entry, shown to and usable by superusers only."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def get_urls(self):
        return superuser_only(super().get_urls())


if admin.site.is_registered(Dashboard):  # RQ_SHOW_ADMIN_LINK
    admin.site.unregister(Dashboard)
    admin.site.register(Dashboard, SuperuserQueueAdmin)

# -- the site root, "View site" and the favicon (browsers ask for /favicon.ico on every page) ---------

FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="6" fill="#2f6f9f"/>'
    '<path d="M8 10h16M8 16h10M8 22h16" stroke="#fff" stroke-width="3" stroke-linecap="round"/>'
    '<circle cx="24" cy="16" r="3" fill="#f5c542"/></svg>'
)


@require_GET
@cache_control(public=True, max_age=86400)
def favicon(request):
    return HttpResponse(FAVICON_SVG, content_type="image/svg+xml")


# The admin's "View site" opens the REST API's documentation (the service's other face); the bare
# site root sends people to the admin.
admin.site.site_url = reverse_lazy("slct-api-docs")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="slct-root"),
    path("favicon.ico", favicon, name="slct-favicon"),
    path("admin/", admin.site.urls),
    path("django-rq/", include((superuser_only(django_rq_urls.urlpatterns), django_rq_urls.app_name))),
    path("api/", include("slct_workflows.api.urls")),
    path("slack/", include("slack_integration.urls")),
    path("", include("slct_workflows.health_urls")),  # /healthz, /readyz, /metrics
]
