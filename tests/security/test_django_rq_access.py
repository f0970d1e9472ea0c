"""django-rq's dashboard can empty queues and delete jobs (the periodic sweep among them):
superusers only, at /django-rq/ and where django-rq mounts itself in the admin."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db


def _client(user: User | None) -> Client:
    c = Client()
    if user is not None:
        c.force_login(user)
    return c


@pytest.fixture
def staff():
    return _client(User.objects.create_user("staff", "s@example.com", None, is_staff=True))


@pytest.fixture
def superuser():
    return _client(User.objects.create_superuser("root", "r@example.com", None))


@pytest.fixture
def queue(clean_redis):
    from django.conf import settings
    from django_rq.settings import get_queues_map
    from rq import Queue

    # plain RQ (django-rq's queue would wait for a commit the test transaction never makes)
    q = Queue(settings.SLCT_QUEUE, connection=clean_redis)
    q.enqueue("slct_workflows.jobs.sweep_job_that_never_runs")  # nobody works this run's queue here
    assert q.count == 1
    return q, get_queues_map()[settings.SLCT_QUEUE]


READ_PATHS = ["/django-rq/", "/django-rq/stats.json/", "/django-rq/metrics/", "/django-rq/queues/{i}/",
              "/django-rq/workers/{i}/", "/django-rq/queues/{i}/scheduled/", "/django-rq/queues/{i}/failed/",
              "/admin/django_rq/dashboard/", "/admin/django_rq/dashboard/metrics/",
              "/admin/django_rq/dashboard/stats.json/", "/admin/django_rq/dashboard/queues/{i}/"]
WRITE_PATHS = ["/django-rq/queues/{i}/empty/", "/django-rq/queues/{i}/requeue-all/",
               "/django-rq/queues/{i}/failed/clear/", "/django-rq/queues/actions/{i}/",
               "/admin/django_rq/dashboard/queues/{i}/empty/"]


def test_anonymous_users_are_sent_to_the_login_page(queue):
    _, i = queue
    for path in READ_PATHS + WRITE_PATHS:
        r = _client(None).get(path.format(i=i))
        assert r.status_code == 302 and r["Location"].startswith("/admin/login/?next="), path


def test_staff_without_superuser_get_403_and_cannot_empty_the_queue(queue, staff):
    q, i = queue
    for path in READ_PATHS:
        assert staff.get(path.format(i=i)).status_code == 403, path
    for path in WRITE_PATHS:
        assert staff.post(path.format(i=i), {"action": "delete", "job_ids": q.job_ids}).status_code == 403, path
    assert q.count == 1


def test_a_staff_user_with_every_permission_is_still_refused(queue):
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("ops", "o@example.com", None, is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    q, i = queue
    c = _client(user)
    assert c.get("/django-rq/").status_code == 403
    assert c.post(f"/django-rq/queues/{i}/empty/").status_code == 403
    assert q.count == 1


def test_superusers_use_the_dashboard(queue, superuser):
    q, i = queue
    for path in READ_PATHS:
        assert superuser.get(path.format(i=i)).status_code == 200, path
    assert superuser.post(f"/django-rq/queues/{i}/empty/").status_code == 302
    assert q.count == 0


def test_the_admin_index_shows_the_dashboard_to_superusers_only(staff, superuser):
    assert "/admin/django_rq/dashboard/" not in staff.get("/admin/").content.decode()
    assert "/admin/django_rq/dashboard/" in superuser.get("/admin/").content.decode()


def _routes(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _routes(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def test_every_django_rq_route_is_guarded():
    """A django-rq upgrade that adds a view cannot slip past the guard."""
    routes = [(route, view) for route, view in _routes(get_resolver().url_patterns)
              if route.startswith(("django-rq/", "admin/django_rq/dashboard/"))]
    assert len(routes) > 30
    unguarded = [route for route, view in routes if not getattr(view, "slct_superuser_only", False)]
    assert unguarded == []
