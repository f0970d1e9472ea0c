"""The demo site's URLs: SLCT mounted exactly as in a user's site (README, "Add to an existing
project"), plus the site root, the favicon and "View site"."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path, reverse_lazy
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET
from django.views.generic import RedirectView

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
    # /api/, /slack/, /django-rq/ (superusers only), /healthz, /readyz, /metrics
    path("", include("slct_workflows.urls")),
    path("admin/", admin.site.urls),
]
