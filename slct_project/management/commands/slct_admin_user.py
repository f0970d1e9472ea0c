"""The local admin user: a password created once and kept under the data directory
(`.slct/admin-password`, mode 0600), so the login stays the same across restarts; printed with the
API token, in a box (`--box`), by run.sh once the web server and the worker are up.

SLCT_ADMIN_PASSWORD, when set, is used instead (and not stored); SLCT_ADMIN_USER names the user.
"""
from __future__ import annotations

import os
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from slct_project.embedded_redis import DATA_DIR


def password_file() -> Path:
    return Path(os.environ.get("SLCT_DATA_DIR", DATA_DIR)) / "admin-password"


def stable_password() -> str:
    """The stored password; created (0600, never readable by others, not even for a moment) on
    first use."""
    path = password_file()
    try:
        password = path.read_text().strip()
        if password:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return password
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    try:
        os.link(tmp, path)  # the first writer wins if two start at once
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def box(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    edge = "+" + "-" * (width + 2) + "+"
    return "\n".join([edge, *(f"| {line.ljust(width)} |" for line in lines), edge])


def _wait_for_web(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def _wait_for_worker(queue: str, timeout: float) -> bool:
    import django_rq
    from rq import Worker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            q = django_rq.get_queue(queue)
            if Worker.all(queue=q):
                return True
        except Exception:  # noqa: BLE001 - Redis not answering yet
            pass
        time.sleep(0.3)
    return False


class Command(BaseCommand):
    help = "Create (or update) the local admin user with its stable password and print its login and API token."

    def add_arguments(self, parser):
        parser.add_argument("--box", action="store_true", help="print the login in a box, with the URLs")
        parser.add_argument("--url", default=None, help="the web server's base URL (for --box)")
        parser.add_argument("--wait", type=float, default=0.0,
                            help="first wait up to this many seconds for the web server (--url) and a worker (--queue)")
        parser.add_argument("--queue", default=None, help="the queue whose worker --wait waits for")

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("SLCT_ADMIN_USER", "admin")
        given = os.environ.get("SLCT_ADMIN_PASSWORD")
        password = given or stable_password()
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@localhost"})
        user.is_staff = user.is_superuser = True
        if not user.check_password(password):
            user.set_password(password)
        user.save()
        token, _ = Token.objects.get_or_create(user=user)
        if not options["box"]:
            self.stdout.write(f"admin login: {username} / {password}   API token: {token.key}")
            return
        url = (options["url"] or "http://127.0.0.1:8000").rstrip("/")
        notes = []
        if options["wait"] > 0:
            if not _wait_for_web(f"{url}/healthz", options["wait"]):
                notes.append(f"(the web server did not answer within {options['wait']:.0f} s; see the log above)")
            if options["queue"] and not _wait_for_worker(options["queue"], options["wait"]):
                notes.append(f"(no worker on queue {options['queue']} yet; see the log above)")
        stored = "SLCT_ADMIN_PASSWORD" if given else str(password_file())
        lines = [
            "SLCT is up",
            f"admin:     {url}/admin/",
            f"login:     {username} / {password}   (kept in {stored})",
            f"API:       {url}/api/   docs: {url}/api/docs/",
            f"API token: {token.key}",
            f"           export TOKEN={token.key}",
            f'           curl -H "Authorization: Token $TOKEN" {url}/api/processes/',
            *notes,
        ]
        self.stdout.write(box(lines))
