#!/usr/bin/env bash
# Run callgate on its embedded defaults (SQLite, embedded speech, a demo agent):
#   ./scripts/run.sh [callgate serve options]
# The first run installs what is missing: Python's venv support and espeak-ng from Debian's packages (as
# root, or through sudo), then callgate with the speech and piper extras into .venv. piper-tts is GPL-3.0
# and espeak-ng GPL-3.0-or-later; both are optional engines that callgate only uses when installed.
# shellcheck source=_common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

# shellcheck disable=SC2046  # word splitting intended: zero or one package name
apt_install_missing espeak-ng $(venv_package_if_missing) \
  || log "continuing without those packages (espeak-ng is only the fallback voice)"
ensure_venv speech piper
exec "$VENV/bin/callgate" serve "$@"
