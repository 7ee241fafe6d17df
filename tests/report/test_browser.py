"""The report in headless Chromium: no console errors, every chart drawn, the table's rows and its
sorting, the run comparison, a screenshot. Skips with a reason when no browser is installed."""

from __future__ import annotations

import time


from fmlab.report import build_report

from .browser import chromium
from .conftest import ACC


def _wait(driver, script: str, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def _charts_drawn(driver) -> None:
    # a file:// navigation can return before the new document replaced the old one (seen on a
    # loaded CI machine): wait for the page to be complete and to hold its chart divs
    _wait(driver, "return document.readyState === 'complete' && "
                  "document.querySelectorAll('div.chart').length > 0")
    _wait(driver, "return Array.from(document.querySelectorAll('div.chart'))"
                  ".every(d => d.querySelector('svg.main-svg'))")


def _column(driver, table: str, col: int) -> list[str]:
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll('#{table} tbody tr'))"
        f".filter(r => r.style.display !== 'none').map(r => r.cells[{col}].textContent)")


def test_report_in_headless_chromium(tmp_path, report_inputs):
    db, runs = report_inputs
    site = build_report(tmp_path / "site", dbs=[db], runs=[runs], png=False).parent
    driver = chromium(tmp_path / "profile")
    try:
        errors = []
        for page in ("index.html", "task_adapt.html", "task_gan.html", "task_clip_retrieval.html", "runs.html"):
            driver.get((site / page).as_uri())
            if page != "index.html":
                _charts_drawn(driver)
            errors += [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        driver.get((site / "task_adapt.html").as_uri())
        _charts_drawn(driver)
        assert len(_column(driver, "results", 0)) == len(ACC)  # one row per (method, shots)
        header = driver.find_elements("css selector", "#results thead th")[3]  # the mean column
        header.click()
        means = [float(v) for v in _column(driver, "results", 3)]
        assert means == sorted(means) and header.get_attribute("data-dir") == "asc"
        header.click()
        assert [float(v) for v in _column(driver, "results", 3)] == sorted(means, reverse=True)
        box = driver.find_element("css selector", "input.filter")
        box.send_keys("linear")
        assert set(_column(driver, "results", 0)) == {"linear"}
        driver.save_screenshot(str(tmp_path / "task.png"))
        assert (tmp_path / "task.png").stat().st_size > 10_000

        driver.get((site / "runs.html").as_uri())
        _charts_drawn(driver)
        for box in driver.find_elements("css selector", "input.pick"):
            box.click()
        driver.find_element("id", "compare-button").click()
        diff = _wait(driver, "const t = document.getElementById('config-diff');"
                             "return t && Array.from(t.tBodies[0].rows).map(r => r.cells[0].textContent)")
        assert diff == ["optim.lr"]  # only the differing key
        _charts_drawn(driver)  # the overlaid curves
        overlaid = driver.execute_script(
            "return document.getElementById('compare-chart-0').data.map(t => t.name)")
        assert overlaid == ["gan_a", "gan_b"]
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        driver.save_screenshot(str(tmp_path / "runs.png"))
    finally:
        driver.quit()


def test_report_has_no_network_reference(tmp_path, report_inputs):
    db, runs = report_inputs
    site = build_report(tmp_path / "site", dbs=[db], runs=[runs], png=False).parent
    for page in site.glob("*.html"):
        text = page.read_text()
        assert "http://" not in text and "https://" not in text, page.name
