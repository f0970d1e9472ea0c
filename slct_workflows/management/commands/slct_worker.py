"""SLCT's RQ worker (slct_workflows.worker.Worker), with `--reload` for development.

    manage.py slct_worker [queue ...] [--with-scheduler] [--reload]

Without `--reload` it is `manage.py rqworker --worker-class slct_workflows.worker.Worker`. With it,
this process watches the code and runs the worker as its child: when a .py file of the project
(or of a module the worker loads, such as SLCT_WORKFLOW_MODULES) changes or appears, the worker is
stopped (warm: its job finishes) and started again on the new code, as the development web
server does. A worker that exits by itself (a crash, a kill) ends this process with its status,
for whatever supervises it (run.sh) to restart. The child stays in this process's process group,
so stopping the group (run.sh does) stops both.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from slct_workflows import conf

SKIP_DIRS = {".venv", "venv", ".git", ".slct", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis",
             "artifacts"}
POLL_SECONDS = 1.0
STOP_SECONDS = 30.0
BROKEN_SECONDS = 10.0  # a worker that exits this soon after a code change: the code is broken


def app_dirs(root: Path) -> list[Path]:
    """The project's own apps (their directories under `root`): where a new module appears."""
    from django.apps import apps

    dirs = []
    for config in apps.get_app_configs():
        path = Path(config.path).resolve()
        if path.is_relative_to(root.resolve()):
            dirs.append(path)
    return dirs


def watched_files(dirs: list[Path]) -> dict[str, float]:
    """Path -> mtime of every .py file in the project's apps (new files too), and of every loaded
    module outside the Python installation (SLCT_WORKFLOW_MODULES...)."""
    found: dict[str, float] = {}
    for dirpath, dirnames, filenames in (entry for d in dirs for entry in os.walk(d)):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                try:
                    found[path] = os.stat(path).st_mtime_ns
                except OSError:
                    pass
    installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py") or path.startswith(installed) or path in found:
            continue
        try:
            found[path] = os.stat(path).st_mtime_ns
        except OSError:
            pass
    return found


def _changed(before: dict[str, float], after: dict[str, float]) -> str | None:
    for path, mtime in after.items():
        if before.get(path) != mtime:
            return path
    for path in before:
        if path not in after:
            return path
    return None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Command(BaseCommand):
    help = "Run the SLCT RQ worker; --reload restarts it when the code changes (development)."

    def add_arguments(self, parser):
        parser.add_argument("queues", nargs="*", help="queues (default: SLCT_QUEUE)")
        parser.add_argument("--with-scheduler", action="store_true", help="run RQ's scheduler too")
        parser.add_argument("--reload", action="store_true", help="restart the worker when the code changes")
        parser.add_argument("--name", default=None, help="the worker's name")

    def handle(self, *args, **options):
        queues = options["queues"] or [conf.queue_name()]
        if not options["reload"]:
            kwargs = {"worker_class": "slct_workflows.worker.Worker", "with_scheduler": options["with_scheduler"],
                      "verbosity": options["verbosity"]}
            if options["name"]:
                kwargs["name"] = options["name"]
            call_command("rqworker", *queues, **kwargs)
            return
        sys.exit(self.reload_loop(queues, options))

    def reload_loop(self, queues: list[str], options: dict) -> int:
        root = Path(getattr(settings, "BASE_DIR", None) or Path.cwd())  # where manage.py is
        argv = [sys.executable, str(root / "manage.py"), "slct_worker", *queues, "-v", str(options["verbosity"])]
        if options["with_scheduler"]:
            argv.append("--with-scheduler")
        if options["name"]:
            argv += ["--name", options["name"]]
        stopping = False
        child: subprocess.Popen | None = None

        def stop(signum, frame):
            nonlocal stopping
            stopping = True
            if child is not None and child.poll() is None:
                try:
                    child.send_signal(signal.SIGTERM)  # RQ ignores a second one within a second
                except ProcessLookupError:
                    pass

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        dirs = app_dirs(root)
        after_change = False
        while True:
            if stopping:  # asked to stop while the last worker was being replaced
                return 128 + signal.SIGTERM
            files = watched_files(dirs)
            child = subprocess.Popen(argv, cwd=root)
            started = time.monotonic()
            changed = None
            while child.poll() is None and not stopping:
                time.sleep(POLL_SECONDS)
                now = watched_files(dirs)
                changed = _changed(files, now)
                if changed:
                    break
            if (not stopping and not changed and after_change and child.returncode > 0
                    and time.monotonic() - started < BROKEN_SECONDS):
                # The new code does not start (a syntax error...): wait for the fix, not for
                # run.sh's growing pauses.
                self.stderr.write(f"slct_worker: the worker exited at once (status {child.returncode}) on the "
                                  f"changed code; restarting it at the next change")
                while not stopping and not (changed := _changed(files, watched_files(dirs))):
                    time.sleep(POLL_SECONDS)
                if stopping:
                    return 128 + signal.SIGTERM
            elif stopping or not changed:
                status = self._wait(child, STOP_SECONDS if stopping else 0)
                return status if status >= 0 else 128 - status
            else:
                self.stderr.write(f"slct_worker: {os.path.relpath(changed, root)} changed; restarting the worker "
                                  f"on the new code")
                self._stop_child(child)
            after_change = True

    def _wait(self, child: subprocess.Popen, timeout: float) -> int:
        try:
            return child.wait(timeout=timeout or None)
        except subprocess.TimeoutExpired:
            self._kill_tree(child)
            return child.wait()

    def _stop_child(self, child: subprocess.Popen) -> None:
        """A warm stop (the worker finishes its job and stops its scheduler); what it leaves
        behind is killed."""
        left = _descendants(child.pid)
        try:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=STOP_SECONDS)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self._kill_tree(child)
            child.wait()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _kill_tree(self, child: subprocess.Popen) -> None:
        for pid in [*_descendants(child.pid), child.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
