"""Driving Debian's chromium with Playwright: the launch arguments and the steps tests share."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def log_in_and_launch(
    page, base: str, *, username: str, password: str, model_name: str, steps: int, algorithm: str = "protonet"
) -> None:
    """Log in on the way to the launch form, submit a small ``algorithm`` on digits, land on its job page."""
    page.goto(f"{base}/accounts/login/?next=/jobs/new/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs/new/")
    page.select_option("select[name=domain]", "digits")
    page.select_option("select[name=algorithm]", algorithm)
    page.fill("input[name=n_way]", "5")
    page.fill("input[name=query_size]", "5")
    page.fill("input[name=steps]", str(steps))
    page.fill("input[name=meta_batch]", "1")
    page.fill("input[name=model_name]", model_name)
    page.click("#launch")
    page.wait_for_url("**/jobs/*/")
