#!/usr/bin/env bash
# Runs the whole test suite. Sets up .venv on first use; uses DATABASE_URL / REDIS_URL when set,
# else SQLite and the embedded redis-server. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup-env.sh
exec .venv/bin/python -m pytest "$@"
