"""report.html in a real headless browser (Debian's chromium through chromium-driver, selenium) at 1280 x 900:
the summary and the quality chart are on the first screen, and no table is wider than the window. A screenshot
of the first screen is saved in the test's tmp_path.

Skipped, with the reason, only off CI when no browser is installed (`scripts/browser_deps.sh`, which
`make test` runs, installs it); with CI=true a missing browser fails the test."""

import pytest

from pipeline.evaluation import report as report_lib
from tests.browser import skip_module_without_browser, start_chrome
from tests.pipeline.evaluation.test_report import v2_report

skip_module_without_browser()

WIDTH, HEIGHT = 1280, 900

# where the page puts what a reader must see first, and how wide it is, read back from the browser's layout
LAYOUT = """
const box = (el) => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, right: r.right}; };
const img = document.querySelector('#summary img');
return {
  width: window.innerWidth, height: window.innerHeight,
  scrollWidth: document.documentElement.scrollWidth,
  summary: box(document.querySelector('#summary ul')),
  chart: img ? Object.assign(box(img), {loaded: img.complete && img.naturalWidth > 0}) : null,
  // a table wider than its column scrolls inside its wrapper: right of the wrapper is hidden, not fitting
  tables: Array.from(document.querySelectorAll('table')).map((t) => box(t).right - box(t.parentElement).right),
};
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    driver = start_chrome(log, ("--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}"))
    # the window's size includes the browser's own bars: the viewport a reader sees is set exactly instead
    metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        yield driver
    finally:
        driver.quit()


def many_models() -> dict:
    """A wide report: more baselines with long names, every list metric, ablations, a long blessing reason."""
    rep = v2_report()
    for i in range(6):
        rep["metrics"][f"a_rather_long_baseline_name_{i}"] = {**rep["metrics"]["popularity"], "hr@100": 0.3}
    rep["ablations"] = {f"ablation_{i}": {"metrics": rep["metrics"]["pinsage"]} for i in range(4)}
    rep["blessing"]["reasons"] *= 3
    return rep


@pytest.mark.parametrize("name, make", [("v2", v2_report), ("many_models", many_models)])
def test_summary_and_chart_are_on_the_first_screen_and_tables_fit(browser, tmp_path, name, make):
    report_lib.write(make(), str(tmp_path))
    browser.get((tmp_path / "report.html").as_uri())
    shot = tmp_path / f"report_{name}_{WIDTH}x{HEIGHT}.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    got = browser.execute_script(LAYOUT)
    assert (got["width"], got["height"]) == (WIDTH, HEIGHT), "the window is not the size the test is about"
    assert 0 <= got["summary"]["top"] and got["summary"]["bottom"] <= HEIGHT, got["summary"]
    assert got["chart"] is not None and got["chart"]["loaded"], "the quality chart is missing from the summary"
    assert got["chart"]["top"] < HEIGHT and got["chart"]["bottom"] <= HEIGHT, got["chart"]
    assert got["scrollWidth"] <= WIDTH, f"the page scrolls sideways ({got['scrollWidth']} px)"
    assert len(got["tables"]) >= 5 and max(got["tables"]) <= 0, "a table is wider than the page's column"
