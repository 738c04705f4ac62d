#!/usr/bin/env bash
# Idempotent environment set-up: .venv from Python 3.10, installed from the full lock.
# Re-installs only when requirements.lock or setup.py changed since the last successful install
# (a stamp file holds their hash). Unpinned pip never finishes resolving this stack: always the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PINSAGE_VENV:-.venv}

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python310() {
  # Candidates in order; each is *run* to check its version (a pyenv shim named python3.10 may exist
  # on PATH while 3.10 is not the active pyenv version, and then it fails).
  local cands=()
  [ -n "${PYTHON310:-}" ] && cands+=("$PYTHON310")
  command -v python3.10 >/dev/null 2>&1 && cands+=("$(command -v python3.10)")
  if command -v pyenv >/dev/null 2>&1; then
    cands+=("$(pyenv root)"/versions/3.10.*/bin/python)
  fi
  cands+=("$HOME"/.pyenv/versions/3.10.*/bin/python /usr/bin/python3.10 /usr/local/bin/python3.10)
  for p in "${cands[@]}"; do
    [ -x "$p" ] && is_py310 "$p" && { echo "$p"; return 0; }
  done
  return 1
}

stamp_of() { cat requirements.lock setup.py | sha256sum | cut -d' ' -f1; }
want=$(stamp_of)
if [ -x "$VENV/bin/python" ] && [ -f "$VENV/.pinsage-stamp" ] && [ "$(cat "$VENV/.pinsage-stamp")" = "$want" ]; then
  exit 0
fi

PY=$(find_python310) || {
  echo "ERROR: Python 3.10 not found (looked for python3.10 on PATH, \$(pyenv root)/versions/3.10.*," >&2
  echo "       ~/.pyenv/versions/3.10.*). TFX 1.16 needs Python 3.8-3.10; install 3.10 (e.g. 'pyenv install 3.10.13')" >&2
  echo "       or point PYTHON310=/path/to/python3.10 at one." >&2
  exit 1
}

# pip's configured local indexes that do not exist on this machine print one warning per package: hide those.
quiet_pip() {
  "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  return "${PIPESTATUS[0]}"
}

start=$(date +%s)
echo "[bootstrap] creating $VENV with $PY and installing requirements.lock (a few minutes on first run)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
quiet_pip install -q --upgrade pip==24.2
quiet_pip install -q -r requirements.lock
quiet_pip install -q --no-deps --no-build-isolation -e .
# TF_USE_LEGACY_KERAS=1 for every process of this venv (pytest, the tfx CLI, the server), set before
# TensorFlow is imported: a .pth line runs at interpreter start-up.
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo 'import os; os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")' > "$site/pinsage_legacy_keras.pth"
"$VENV/bin/python" -c "import tfx, tensorflow_gnn, apache_beam, scann" || { echo "ERROR: install incomplete" >&2; exit 1; }
echo "$want" > "$VENV/.pinsage-stamp"
echo "[bootstrap] done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
