"""Screenshot pages of an ``fmlab report`` site in headless Chromium (for the README and docs).

Usage: python tools/report_screenshot.py SITE_DIR OUT_DIR [PAGE[#compare] ...]
A page given as ``runs.html#compare`` ticks every run (``#compare=TEXT``: those whose name holds
TEXT) and presses *compare* before the shot;
``PAGE#ID`` scrolls to the element ``ID`` first.
Needs selenium and Debian's chromium + chromium-driver.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,1000", "--hide-scrollbars")


def main(site: Path, out: Path, pages: list[str]) -> None:
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for page in pages:
            name, _, action = page.partition("#")
            driver.get((site / name).resolve().as_uri())
            time.sleep(2)
            if action.startswith("compare"):
                _, _, part = action.partition("=")
                for box in driver.find_elements("css selector", "input.pick"):
                    if part in box.get_attribute("value"):
                        box.click()
                driver.find_element("id", "compare-button").click()
                time.sleep(2)
                driver.execute_script("document.getElementById('compare-out').scrollIntoView()")
            elif action:  # an element id: scroll to it (e.g. runs.html#run-3)
                driver.execute_script(f"document.getElementById({action!r}).scrollIntoView()")
                time.sleep(0.5)
            png = out / f"report_{Path(name).stem}{'_' + action.split('=')[0] if action else ''}.png"
            driver.save_screenshot(str(png))
            print(png, "console:", driver.get_log("browser"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:] or ["index.html"])
