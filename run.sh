#!/usr/bin/env bash
# Runs the whole thing: venv, install, migrate, Redis (embedded unless REDIS_URL is set),
# an RQ worker with the scheduler, the periodic recovery sweep and the web server on :8000.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup-env.sh
PY=.venv/bin/python
$PY manage.py migrate --noinput
$PY manage.py slct_admin_user
$PY manage.py rqworker "${SLCT_QUEUE:-slct}" --with-scheduler &
WORKER=$!
trap 'kill $WORKER 2>/dev/null || true' EXIT INT TERM
$PY manage.py slct_sweep --schedule
exec_port="${PORT:-8000}"
echo "SLCT is up: http://127.0.0.1:${exec_port}/admin/  (REST: /api/, docs: /api/docs/)"
$PY manage.py runserver "0.0.0.0:${exec_port}"
