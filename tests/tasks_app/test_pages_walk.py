"""The experiment flows a machine-learning user walks, in real headless Chromium: launch, be told
when a job ends, re-run it from its page, compare the two runs, follow the lineage, download the
weights and the model card; every page again at 390 px. Screenshots go to ``test-artifacts/walk/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from learning.models import MetaModel
from tasks_app.models import Job
from tests.browser import CHROMIUM, CHROMIUM_ARGS, log_in_and_launch

pytestmark = [pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 1000}


def _fits(page) -> None:
    """No sideways scrolling, and every navigation link on screen."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"{page.url} is {width} px wide"
    for link in page.locator("nav.nav a").all():
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (
            link.inner_text()
        )


def test_launch_rerun_compare_lineage_and_downloads_at_desktop_and_phone_widths(
    processes, django_user_model, digits, settings, monkeypatch
):
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM reads are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    django_user_model.objects.create_user(username="grace", password="a-long-password-1")
    processes.worker("w1")
    base = processes.server()
    shots = Path(settings.BASE_DIR) / "test-artifacts" / "walk"
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
        page = context.new_page()

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        try:
            # a small job from the form; the page tells when it ends
            log_in_and_launch(
                page, base, username="grace", password="a-long-password-1", model_name="walk first", steps=30
            )
            expect(page.locator("[data-status]")).to_have_text("Succeeded", timeout=300_000)
            expect(page.locator("#job-notices .notice")).to_contain_text("succeeded", timeout=30_000)
            shot("job-1280")

            # re-run it: the form comes filled in with its settings and task spec
            page.click("#rerun")
            page.wait_for_url("**/jobs/new/?rerun=*")
            expect(page.locator("#rerun-note")).to_be_visible()
            expect(page.locator("input[name=steps]")).to_have_value("30")
            expect(page.locator("input[name=inner_lr]")).to_be_hidden()  # ProtoNet has no inner loop
            # the form says how long training will take, from the job that just finished here
            expect(page.locator("#estimate")).to_contain_text("Training takes about")
            expect(page.locator("#split-preview")).to_contain_text("meta-train")
            page.fill("input[name=model_name]", "walk second")
            page.fill("input[name=outer_lr]", "0.002")
            page.click("#launch")
            page.wait_for_url("**/jobs/*/")
            expect(page.locator("[data-status]")).to_have_text("Succeeded", timeout=300_000)
            first, second = Job.objects.order_by("pk")
            assert second.task_spec_id == first.task_spec_id

            # compare the two from the job list
            page.goto(f"{base}/jobs/")
            for job in (first, second):
                page.check(f"input[name=job][value='{job.pk}']")
            page.click("#compare-button")
            page.wait_for_url("**/compare/?*")
            expect(page.locator("#compare-settings tr.differs")).to_contain_text("outer_lr")
            expect(page.locator("#compare-chart")).to_be_visible()
            assert page.locator("#compare-table tbody tr").count() >= 4
            expect(page.locator("#compare-scores")).to_contain_text("±")
            shot("compare-1280")

            # the model: its lineage, and both downloads
            model = MetaModel.objects.get(name="walk first")
            page.goto(f"{base}/models/{model.pk}/")
            expect(page.locator("#lineage-graph")).to_contain_text("digits")
            expect(page.locator(f"#lineage-graph a[href='/jobs/{first.pk}/']")).to_be_visible()
            shot("model-1280")
            with page.expect_download() as weights:
                page.click("#download-weights")
            data = Path(weights.value.path()).read_bytes()
            assert hashlib.sha256(data).hexdigest() == model.weights_sha256
            with page.expect_download() as card:
                page.click("#download-card")
            text = Path(card.value.path()).read_text()
            assert (
                text.startswith("# walk first") and "## Evaluations" in text and "manage.py metatrain" in text
            )

            # every page again on a phone
            page.set_viewport_size(PHONE)
            for name, path in (
                ("home", "/"),
                ("models", "/models/"),
                ("model", f"/models/{model.pk}/"),
                ("jobs", "/jobs/"),
                ("job", f"/jobs/{first.pk}/"),
                ("compare", f"/compare/?job={first.pk}&job={second.pk}"),
                ("launch", f"/jobs/new/?rerun={first.pk}"),
                ("domain", "/domains/digits/"),
                ("domains", "/domains/"),
                ("task-specs", "/task-specs/"),
                ("transfer-matrix", "/transfer/"),
                ("recommend", "/transfer/recommend/"),
                ("transfer-form", "/jobs/transfer/"),
                ("try", f"/models/{model.pk}/try/"),
            ):
                response = page.goto(f"{base}{path}")
                assert response is not None and response.status == 200, (path, response and response.status)
                _fits(page)
                shot(f"{name}-390")
        except Exception:
            shot("failure")
            raise
        finally:
            browser.close()
