"""Headless Chromium from Debian, driven by Selenium through Debian's chromedriver: nothing downloaded.

Each browser gets a fresh profile folder (removed with it) and the flags that keep it from
reaching out to the network by itself. Screenshots go to tests/artifacts/ (ignored by git), or
to CASELOOP_ARTIFACTS, where a test run keeps them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CASELOOP_ARTIFACTS") or ROOT / "tests" / "artifacts")
INSTALL = "tests/browser/ensure-deps.sh (as root: apt-get install chromium chromium-driver fonts-noto-cjk)"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
DESKTOP = (1440, 1000)
PHONE = (375, 812)


def missing() -> list[str]:
    """What the browser tests need and this machine lacks."""
    lacking = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    fonts = subprocess.run(["fc-list", ":lang=zh-cn", "family"], capture_output=True, text=True, check=False).stdout
    if "Noto Sans CJK" not in fonts and "Noto Serif CJK" not in fonts:
        lacking.append("a CJK font (fonts-noto-cjk)")
    return lacking


@contextlib.contextmanager
def browser(size: tuple[int, int] = DESKTOP, *, mobile: bool = False) -> Iterator[WebDriver]:
    profile = Path(tempfile.mkdtemp(prefix=f"caseloop-chromium-{os.getpid()}-"))
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    options.add_argument("--lang=zh-CN")
    if mobile:  # a phone's screen: width, height and touch, as a 375×812 handset reports them
        options.add_experimental_option(
            "mobileEmulation", {"deviceMetrics": {"width": size[0], "height": size[1], "pixelRatio": 2, "touch": True}}
        )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
