# Sourced by run.sh and test.sh: a virtualenv with the pinned requirements, and a Redis.
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
  REDIS_URL=$(.venv/bin/python -m slct_project.embedded_redis)
  export REDIS_URL
fi
export DJANGO_SETTINGS_MODULE=slct_project.settings
