#!/usr/bin/env bash
# The headless browser tests/serving/test_page.py drives: Debian's chromium + chromium-driver.
# Idempotent: nothing to do when both are on PATH. Installs them with apt-get when we are root (CI's machine)
# or can sudo without a password; otherwise says what to run (the test then skips, except on CI where it fails).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[browser] chromium/chromedriver missing and no apt-get: install a Chromium and its chromedriver" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "[browser] chromium/chromedriver missing: run 'sudo apt-get install -y chromium chromium-driver'" >&2
    exit 0
  fi
fi
echo "[browser] installing chromium + chromium-driver (apt-get) for the page test"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; }; then
  # on CI the page test must run, so a failed install fails here; elsewhere the test skips with its reason
  echo "[browser] apt-get could not install chromium chromium-driver" >&2
  case "${CI:-}" in true|1|yes) exit 1 ;; esac
fi
