"""A person's path through the site in real headless Chromium (Debian's package, driven by Playwright).

Log in, open the launch form, submit a small job, watch the progress bar reach 100% live
and the model link appear. The screenshot is kept under ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks_app.models import Job
from tasks_app.services import job_cancel, job_create_meta_train
from tests.browser import CHROMIUM, CHROMIUM_ARGS, log_in_and_launch

pytestmark = [pytest.mark.slow]


def test_launch_a_job_in_the_browser_and_watch_it_finish_live(processes, django_user_model, digits, settings):
    from playwright.sync_api import expect, sync_playwright

    # given the site, a worker and a user (hashed as the server process will check it)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    grace = django_user_model.objects.create_user(username="grace", password="a-long-password-1")
    cancelled = job_cancel(
        job=job_create_meta_train(
            owner=grace, domain_slug="digits", algorithm="protonet", task={"n_way": 5}, enqueue=False
        )
    )
    processes.worker("w1")
    base = processes.server()
    shots = Path(settings.BASE_DIR) / "test-artifacts"
    shots.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            # when the user logs in and launches a small ProtoNet on the digits
            log_in_and_launch(
                page,
                base,
                username="grace",
                password="a-long-password-1",
                model_name="browser protonet",
                steps=60,
            )

            # then the page goes live, the bar reaches 100% and the model link appears, without a reload
            expect(page.locator("[data-live-state]")).to_have_text("Live", timeout=30_000)
            expect(page.locator("[data-progress]")).to_have_attribute("aria-valuenow", "100", timeout=300_000)
            expect(page.locator("#model-link")).to_be_visible(timeout=300_000)
            expect(page.locator("[data-status]")).to_have_text("Succeeded")
            # the header counts the attempt that ran, the launch message did not go stale, and the
            # chart's numbers are in its table too (for screen readers)
            expect(page.locator("[data-attempts]")).to_have_text(" · attempt 1")
            expect(page.locator(".message")).to_contain_text("launched")
            assert page.locator("#chart-table tbody tr").count() >= 2
            expect(page.locator("#chart-table thead")).to_contain_text("loss")
            page.screenshot(path=str(shots / "job-finished.png"), full_page=True)
            model_url = page.locator("#model-link").get_attribute("href")
            page.click("#model-link")
            page.wait_for_url(f"**{model_url}")
            expect(page.locator("h1")).to_contain_text("browser protonet")
            # the model page links back to the job that trained it
            expect(page.locator("dd a[href^='/jobs/']")).to_be_visible()

            # and a job cancelled before it ran says it has no steps instead of drawing an empty chart
            page.goto(f"{base}/jobs/{cancelled.pk}/")
            expect(page.locator("[data-status]")).to_have_text("Cancelled")
            expect(page.locator("[data-chart-empty]")).to_be_visible()
            expect(page.locator("#chart")).to_be_hidden()
            expect(page.locator("[data-attempts]")).to_have_text("")
        except Exception:
            page.screenshot(path=str(shots / "job-failure.png"), full_page=True)
            raise
        finally:
            browser.close()

    job = Job.objects.exclude(pk=cancelled.pk).get()
    assert job.status == "succeeded" and job.result_model.name == "browser protonet"
