#!/usr/bin/env bash
# Runs the whole thing: venv, install, migrate, Redis (embedded unless REDIS_URL is set),
# an RQ worker with the scheduler, the timer loop and the periodic recovery sweep (restarted if it
# dies; in development it also restarts on code changes), and the web server on :${PORT:-8000}.
# Prints the admin login and API token last, in a box. Ctrl+C or a SIGTERM to this script stops
# all of it.
#
#   ./run.sh                 everything
#   ./run.sh shell           `manage.py shell` with the same environment (the embedded Redis's URL...)
#   ./run.sh manage ARGS...  any `manage.py` command with the same environment
set -euo pipefail
cd "$(dirname "$0")"
# Development mode, explicitly: the settings default to production (docs/SECURITY.md).
export DEBUG="${DEBUG:-1}"
source scripts/setup-env.sh
case "${1:-}" in
  shell) shift; exec .venv/bin/python manage.py shell "$@" ;;
  manage) shift; exec .venv/bin/python manage.py "$@" ;;
  "") ;;
  *) echo "usage: ./run.sh [shell [ARGS...] | manage COMMAND [ARGS...]]" >&2; exit 2 ;;
esac
# Metrics (docs/OPERATIONS.md): the worker's step counters reach the web server's /metrics through
# a directory both write (emptied at start, as prometheus_client asks); readable from this machine.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/.slct/metrics}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
export SLCT_METRICS_ALLOW="${SLCT_METRICS_ALLOW:-127.0.0.1,::1}"
PY=.venv/bin/python
$PY manage.py migrate --noinput

# Runs a command in a process group of its own, so that stopping it stops what it started too
# (the worker's scheduler process, the web server's autoreloaded child). Always run with `&`:
# exec replaces the background subshell, so $! is the command's pid and its group's id.
in_own_group() {
  exec "$PY" -c 'import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])' "$@"
}

# The worker rides out Redis and database outages by itself (slct_workflows/workers/worker.py), and its
# timer loop runs the recovery sweep; this loop restarts it if it dies anyway (a crash, an OOM
# kill, kill -9), after a pause that grows while it keeps dying young. In development (DEBUG on)
# it runs with --reload: restarted on the new code when a .py file changes, as the web server is,
# so a workflow added while this runs is known to the worker too. Its per-job lines are at DEBUG
# (a summary every minute at INFO); `WORKER_VERBOSITY=2 ./run.sh` shows them.
WORKER_ARGS=("${SLCT_QUEUE:-slct}" --with-scheduler -v "${WORKER_VERBOSITY:-1}")
case "${DEBUG,,}" in 1|true|yes|on) WORKER_ARGS+=(--reload) ;; esac
supervise_worker() {
  local pause=1 child=0 started status
  trap 'kill -TERM -- -$child 2>/dev/null || true; wait $child 2>/dev/null || true; exit 0' TERM INT
  while true; do
    started=$SECONDS
    in_own_group "$PY" manage.py slct_worker "${WORKER_ARGS[@]}" &
    child=$!
    status=0
    wait $child || status=$?
    kill -KILL -- -$child 2>/dev/null || true  # what it left behind (an orphaned scheduler)
    if (( SECONDS - started >= 60 )); then pause=1; fi
    echo "run.sh: the worker exited (status $status); restarting it in ${pause}s" >&2
    sleep "$pause" & wait $! || true
    pause=$(( pause < 30 ? pause * 2 : 30 ))
  done
}

WEB=0
SUPERVISOR=0
BANNER=0
stop_all() {
  trap - EXIT INT TERM
  [ "$BANNER" != 0 ] && kill -TERM "$BANNER" 2>/dev/null || true
  [ "$WEB" != 0 ] && kill -TERM -- -"$WEB" 2>/dev/null || true
  [ "$SUPERVISOR" != 0 ] && kill -TERM "$SUPERVISOR" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

supervise_worker &
SUPERVISOR=$!

# A second path for the sweep beside the workers' own: the self-rescheduling RQ job.
$PY manage.py slct_sweep --schedule || echo "run.sh: could not schedule the sweep job (the worker sweeps anyway)" >&2
exec_port="${PORT:-8000}"
in_own_group "$PY" manage.py runserver "0.0.0.0:${exec_port}" &
WEB=$!
# The login last, once the web server answers and the worker is registered, so that it is the
# last thing on the screen. The password is created once and kept in .slct/admin-password (0600).
"$PY" manage.py slct_admin_user --box --url "http://127.0.0.1:${exec_port}" --wait 60 --queue "${SLCT_QUEUE:-slct}" &
BANNER=$!
wait $BANNER || echo "run.sh: could not print the admin login (manage.py slct_admin_user)" >&2
BANNER=0
wait $WEB
