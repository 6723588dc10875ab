"""Open a page (``bench report``'s HTML) in a real headless Chromium and check it as a reader would see it.

Uses Debian's ``chromium`` and ``chromium-driver`` packages (``apt-get install chromium chromium-driver``) through
Selenium; nothing is downloaded. :func:`check_page` loads the file, collects the browser console's errors, counts
tables and images, finds images that did not decode and any resource fetched from outside the page (a
self-contained report has none), and optionally saves a full-page screenshot.

    python -m evaluators.browser report.html --screenshot report.png    # exit 1 when the page has a problem
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
INSTALL_HINT = "install Debian's packages: apt-get install chromium chromium-driver"


class BrowserUnavailable(RuntimeError):
    """No headless Chromium (or no Selenium) on this machine; the message says what to install."""


@dataclass
class PageCheck:
    title: str
    console_errors: list[str]
    tables: int
    images: int
    broken_images: list[str]
    external_requests: list[str]
    grid_images: int
    screenshot: str | None = None
    headings: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = [f"console error: {e}" for e in self.console_errors]
        out += [f"image did not load: {s[:80]}" for s in self.broken_images]
        out += [f"fetched from outside the page: {u}" for u in self.external_requests]
        return out


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; raises BrowserUnavailable naming what to install."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    if browser is None or driver is None:
        raise BrowserUnavailable(f"no headless Chromium ({'chromedriver' if browser else 'chromium'} not found); "
                                 f"{INSTALL_HINT}")
    try:
        import selenium  # noqa: F401
    except ImportError as err:
        raise BrowserUnavailable("selenium is not installed: pip install selenium (in the .[test] extra)") from err
    return browser, driver


def check_page(page: str | Path, screenshot: str | Path | None = None, width: int = 1280,
               max_height: int = 12000) -> PageCheck:
    """Load ``page`` (a local HTML file) in headless Chromium and report what a reader gets (see module docstring)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_browser()
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no such page")
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        opts = webdriver.ChromeOptions()
        opts.binary_location = browser
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-quic", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
                     f"--window-size={width},900"):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
        try:
            driver.get(page.as_uri())
            state = driver.execute_script("""
                const imgs = [...document.images];
                return {
                  title: document.title,
                  tables: document.querySelectorAll('table').length,
                  images: imgs.length,
                  broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 120)),
                  grid: document.querySelectorAll('table.grid img').length,
                  external: performance.getEntriesByType('resource').map(e => e.name)
                              .filter(u => !u.startsWith('data:') && !u.startsWith('file:')),
                  headings: [...document.querySelectorAll('h1,h2')].map(h => h.textContent),
                  height: Math.ceil(document.documentElement.scrollHeight),
                };""")
            errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            shot = None
            if screenshot is not None:
                driver.set_window_size(width, min(max_height, int(state["height"]) + 40))
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(screenshot))
                shot = str(screenshot)
        finally:
            driver.quit()
    return PageCheck(state["title"], errors, int(state["tables"]), int(state["images"]), list(state["broken"]),
                     list(state["external"]), int(state["grid"]), shot, list(state["headings"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--max-height", type=int, default=12000)
    args = ap.parse_args(argv)
    try:
        result = check_page(args.page, args.screenshot, args.width, args.max_height)
    except BrowserUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result), indent=1))
    for p in result.problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
