# Sourced by run.sh and test.sh: a virtualenv with the pinned requirements, and a Redis.
# Source it in your own shell (`source scripts/setup-env.sh`) for the run command's environment
# (REDIS_URL of the embedded Redis, DEBUG, DJANGO_SETTINGS_MODULE); `./run.sh shell` opens
# `manage.py shell` with it.
# Development mode is asked for here, explicitly: the settings default to production (DEBUG off,
# a real SECRET_KEY and ALLOWED_HOSTS required; docs/SECURITY.md). DEBUG=0 in the environment
# keeps production behaviour for these scripts too.
export DEBUG="${DEBUG:-1}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi
if [ -z "${REDIS_URL:-}" ]; then
  # Refuses (exit status 2, with what to do) a port held by a Redis it did not start.
  REDIS_URL=$(.venv/bin/python -m slct_project.embedded_redis) || { unset REDIS_URL; return 1 2>/dev/null || exit 1; }
  export REDIS_URL
fi
export DJANGO_SETTINGS_MODULE=slct_project.settings
