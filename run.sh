#!/usr/bin/env bash
# Runs the whole thing: venv, install, migrate, Redis (embedded unless REDIS_URL is set),
# an RQ worker with the scheduler, the timer loop and the periodic recovery sweep (restarted if it
# dies), and the web server on :8000.
set -euo pipefail
cd "$(dirname "$0")"
# Development mode, explicitly: the settings default to production (docs/SECURITY.md).
export DEBUG="${DEBUG:-1}"
source scripts/setup-env.sh
PY=.venv/bin/python
$PY manage.py migrate --noinput
$PY manage.py slct_admin_user

# The worker rides out Redis and database outages by itself (slct_workflows/worker.py), and its
# timer loop runs the recovery sweep; this loop restarts it if it dies anyway (a crash, an OOM
# kill, kill -9), after a pause that grows while it keeps dying young. Each worker runs in a
# process group of its own, so the scheduler process it forks goes with it.
supervise_worker() {
  local pause=1 child=0 started status
  trap 'kill -TERM -- -$child 2>/dev/null || true; wait $child 2>/dev/null || true; exit 0' TERM INT
  while true; do
    started=$SECONDS
    $PY -c 'import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])' \
      "$PY" manage.py rqworker "${SLCT_QUEUE:-slct}" --with-scheduler &
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
supervise_worker &
SUPERVISOR=$!
trap 'kill -TERM $SUPERVISOR 2>/dev/null || true; wait $SUPERVISOR 2>/dev/null || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A second path for the sweep beside the workers' own: the self-rescheduling RQ job.
$PY manage.py slct_sweep --schedule || echo "run.sh: could not schedule the sweep job (the worker sweeps anyway)" >&2
exec_port="${PORT:-8000}"
echo "SLCT is up: http://127.0.0.1:${exec_port}/admin/  (REST: /api/, docs: /api/docs/)"
$PY manage.py runserver "0.0.0.0:${exec_port}"
