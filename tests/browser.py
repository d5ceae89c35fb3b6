"""Drive the demo page (`python -m helpers demo`) with a real headless Chromium through Selenium: Debian's
`chromium` and `chromium-driver` packages (.ci/run installs them), since no browser build can be downloaded here."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WAIT = 120  # seconds for one step of the page (the first caption compiles the search)


def free_port() -> int:
    """A TCP port nobody listens on now, on the loopback address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_demo(work: Path, port: int, log: Path) -> subprocess.Popen:
    """`python -m helpers demo` in a process of its own, once it says it serves (its output goes to `log`)."""
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "helpers", "demo", "--out", str(work), "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + WAIT
    while f"127.0.0.1:{port}" not in log.read_text():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"the demo did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return server


def browser():
    """A headless Chromium, 1280 x 1000 pixels."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def use_demo(url: str, photo: Path, query: str, folder: Path | str, shots: Path) -> dict:
    """Caption `photo` in the first tab, search `folder` for `query` in the second; a screenshot of each tab.

    Returns what the page showed: the two captions, the number of result pictures and the notes under them.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser()
    try:
        page.get(url)
        wait = WebDriverWait(page, WAIT)
        wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]"))).send_keys(
            str(photo))
        greedy = page.find_element(By.CSS_SELECTOR, "#greedy-caption textarea")
        wait.until(lambda _: greedy.get_attribute("value").strip())
        seen = {"greedy": greedy.get_attribute("value"),
                "beam": page.find_element(By.CSS_SELECTOR, "#beam-caption textarea").get_attribute("value"),
                "attention_panels": len(page.find_elements(By.CSS_SELECTOR, "#attention-map img, #attention-map svg"))}
        time.sleep(1)  # the picture and the plot finish drawing
        page.save_screenshot(str(shots / "demo_caption.png"))
        tab = next(b for b in page.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Search" in b.text)
        tab.click()
        wait.until(shown.visibility_of_element_located((By.CSS_SELECTOR, "#query textarea"))).send_keys(query)
        page.find_element(By.CSS_SELECTOR, "#folder textarea").send_keys(str(folder))
        page.find_element(By.CSS_SELECTOR, "#search-button").click()
        wait.until(lambda _: page.find_elements(By.CSS_SELECTOR, "#results img"))
        time.sleep(1)
        seen["results"] = len(page.find_elements(By.CSS_SELECTOR, "#results img"))
        seen["notes"] = page.find_element(By.CSS_SELECTOR, "#search-notes").text
        page.save_screenshot(str(shots / "demo_search.png"))
        return seen
    finally:
        page.quit()
