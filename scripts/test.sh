#!/usr/bin/env bash
# Run every check CI runs: ./scripts/test.sh [pytest arguments]
# Installs what is missing (PostgreSQL, Redis, nginx, Chromium, espeak-ng, sox, Node.js, baresip, kamailio
# from Debian's packages; the Python dev, speech, piper, s3 and turns extras into .venv; JS packages when
# package.json exists), then runs
# ruff check, ruff format --check, mypy (strict, over src/), lint-imports and pytest, stopping at the first
# failure.
# The tests start their own PostgreSQL, Redis and nginx on free ports; servers already running are not used.
# shellcheck source=_common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

# shellcheck disable=SC2046  # word splitting intended: zero or one package name
apt_install_missing postgresql:initdb redis-server nginx chromium espeak-ng sox nodejs:node npm iproute2:ip util-linux:unshare baresip kamailio \
  $(venv_package_if_missing) \
  || die "install the Debian packages above, then run this again"
ensure_venv dev speech piper s3 turns

# JS packages, reinstalled only when package.json or package-lock.json changed.
js_key() { cat package.json; [ ! -f package-lock.json ] || cat package-lock.json; }
if [ -f package.json ] && [ "$(cat node_modules/.callgate-installed 2>/dev/null)" != "$(js_key | sha256sum)" ]; then
  log "installing JS packages"
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
  js_key | sha256sum > node_modules/.callgate-installed
fi

export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
# Playwright drives Debian's /usr/bin/chromium; it must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

lint_paths=()
for dir in src tests bench; do
  if [ -d "$dir" ]; then lint_paths+=("$dir"); fi
done

log "ruff check"
ruff check "${lint_paths[@]}"
log "ruff format --check"
ruff format --check "${lint_paths[@]}"
log "mypy src"
mypy src
log "lint-imports (the package layers in docs/architecture.md)"
lint-imports --no-cache
log "pytest"
# `python -m` puts the repo root on sys.path, so tests import helpers as `tests.…`. Two workers
# (pytest-xdist; CALLGATE_TEST_WORKERS=0 runs in one process): most tests wait on real time (servers,
# calls, phones), so two share two cores well. A file's tests stay on one worker (--dist loadfile): its
# module-scoped fixtures (the benchmarks' smoke run, the namespace runs) then run once.
exec python -m pytest -n "${CALLGATE_TEST_WORKERS:-2}" --dist loadfile --durations=30 "$@"
