"""django-rq's dashboard, for superusers only.

Its views let any staff user empty or requeue queues and delete jobs (the periodic sweep job
included), and its stats/metrics views take any staff session (or its RQ_API_TOKEN). Queue surgery
bypasses every guarantee the service layer keeps, so every one of its views, at /django-rq/
(`slct_workflows.urls`) and where it mounts itself in the admin (/admin/django_rq/dashboard/, when
RQ_SHOW_ADMIN_LINK is on, django-rq's default), is for superusers only: anonymous users are sent
to the login page, other users get 403. Monitoring reads the project's own /metrics.
"""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import URLPattern, URLResolver, reverse
from django_rq.admin import QueueAdmin


def superuser_required(view: Callable) -> Callable:
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


def guard_admin_entry(site: admin.AdminSite = admin.site) -> None:
    """Replace django-rq's admin entry (registered when its admin module is imported, with
    RQ_SHOW_ADMIN_LINK on) by the superuser-only one. Idempotent; must run before the admin's URLs
    are built (`admin.site.urls` builds them when the URLconf is loaded)."""
    import django_rq.admin  # noqa: F401 - registers django-rq's entry now, if it is to be shown
    from django_rq.models import Dashboard

    if site.is_registered(Dashboard) and not isinstance(site._registry[Dashboard], SuperuserQueueAdmin):
        site.unregister(Dashboard)
        site.register(Dashboard, SuperuserQueueAdmin)
