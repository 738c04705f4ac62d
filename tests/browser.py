"""Headless Chromium for the page tests (Debian's chromium through chromium-driver, selenium).

Importing this from a test module skips that module, with the reason, only off CI when no browser is installed
(`scripts/browser_deps.sh`, which `make test` runs, installs it); with CI=true a missing browser fails instead."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HEADLESS_ARGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu")


def skip_module_without_browser() -> None:
    """A module-level skip off CI when chromium or chromedriver is missing; call it at the top of a test module."""
    if not (CHROMIUM and DRIVER) and not ON_CI:
        pytest.skip(
            "no chromium + chromedriver on PATH (run scripts/browser_deps.sh, or apt-get install chromium "
            "chromium-driver); on CI this test runs",
            allow_module_level=True,
        )


def start_chrome(log_path: str, extra_args: tuple = ()):
    """A headless Chrome webdriver writing chromedriver's log to `log_path`; fails (not skips) without a browser."""
    assert CHROMIUM and DRIVER, "CI must have chromium and chromedriver: scripts/browser_deps.sh installs them"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in HEADLESS_ARGS + tuple(extra_args):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER, log_output=str(log_path)), options=opts)
    driver.set_page_load_timeout(60)
    return driver
