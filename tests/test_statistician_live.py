"""The Neural Statistician end to end on the system `make run` starts: launched from the API and from
the web form, trained by its worker, then used through the API and in real headless Chromium to
classify ("Try it") and to draw samples of a class from a user's examples of it.

Screenshots go to ``test-artifacts/statistician/``.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from learning.builtin_domains import digits_arrays
from tests.browser import CHROMIUM, CHROMIUM_ARGS, log_in_and_launch
from tests.runkb import Client, RunningSystem, wait_until

pytestmark = pytest.mark.slow

SMALL = {"steps": 40, "meta_batch": 1, "model": {"hidden": 8}}
PASSWORD = "a long pass phrase 42"


@pytest.fixture
def system(tmp_path):
    running = RunningSystem(tmp_path / "var")
    yield running
    running.kill_everything()


def digit_pngs(digit: int, count: int, start: int = 0) -> list[tuple[str, bytes]]:
    """``count`` real images of ``digit`` from the built-in digits domain, as PNG files (ink dark)."""
    data = digits_arrays()
    picked = np.flatnonzero(data.labels == data.class_names.index(str(digit)))[start : start + count]
    files = []
    for n, index in enumerate(picked):
        buffer = io.BytesIO()
        Image.fromarray(255 - data.images[index]).save(buffer, format="PNG")
        files.append((f"digit-{digit}-{n}.png", buffer.getvalue()))
    return files


def finished(client: Client, job_id: int) -> dict:
    job = wait_until(
        lambda: (j := client.job(job_id))["status"] in ("succeeded", "failed", "cancelled") and j,
        timeout=300,
        message=lambda: f"{client.job(job_id)}\n{client.system.output[-4000:]}",
    )
    assert job["status"] == "succeeded", f"{job['error_summary']}\n{job['error_traceback']}"
    return job


def test_a_statistician_trains_on_the_worker_then_classifies_and_draws_through_api_and_pages(
    system, monkeypatch
):
    system.wait_until_serving()
    ada = Client.sign_up(system, "ada", PASSWORD)

    # when ada launches a small Neural Statistician on the digits through the API
    status, body = ada.call(
        "POST",
        "/api/v1/jobs/",
        {
            "domain": "digits",
            "algorithm": "statistician",
            "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
            "hyperparameters": SMALL,
            "model_name": "api statistician",
        },
    )
    assert status == 201, body
    job = finished(ada, body["id"])

    # then the worker trained it, and it is in the catalog with its evaluation on held-out digits
    status, model = ada.call("GET", f"/api/v1/models/{job['result_model']}/")
    assert status == 200 and model["algorithm"] == "statistician" and model["architecture"] == "statistician"
    status, evaluations = ada.call("GET", f"/api/v1/evaluations/?model={model['id']}")
    assert status == 200 and evaluations["count"] >= 1, evaluations
    assert evaluations["results"][0]["episodes"] >= 600

    # and it labels queries from a support set through the API
    support = {
        "support": [f for d in (1, 2, 3) for f in digit_pngs(d, 2)],
        "query": digit_pngs(3, 2, start=5),
    }
    status, answer = ada.upload(
        f"/api/v1/models/{model['id']}/predict/",
        {"support_labels": [str(d) for d in (1, 2, 3) for _ in range(2)]},
        support,
    )
    assert status == 200, answer
    assert len(answer["predictions"]) == 2 and answer["labels"] == ["1", "2", "3"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-6 for p in answer["predictions"])

    # and it draws new images of a class from three examples of it, the same for the same seed
    def draw(seed: str) -> dict:
        status, answer = ada.upload(
            f"/api/v1/models/{model['id']}/samples/",
            {"count": "5", "seed": seed},
            {"support": digit_pngs(7, 3)},
        )
        assert status == 200, answer
        return answer

    first = draw("1")
    assert first["count"] == 5 and first == draw("1") and first["samples"] != draw("2")["samples"]
    png = base64.b64decode(first["samples"][0].partition(",")[2])
    assert Image.open(io.BytesIO(png)).size == (28, 28)

    # when she launches another from the web form in a browser, and uses it from its pages
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    shots = Path(settings.BASE_DIR) / "test-artifacts" / "statistician"
    shots.mkdir(parents=True, exist_ok=True)
    uploads = shots / "uploads"
    uploads.mkdir(exist_ok=True)

    def files(pngs: list[tuple[str, bytes]]) -> list[str]:
        for name, content in pngs:
            (uploads / name).write_bytes(content)
        return [str(uploads / name) for name, _ in pngs]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            log_in_and_launch(
                page,
                system.base,
                username="ada",
                password=PASSWORD,
                model_name="form statistician",
                steps=SMALL["steps"],
                algorithm="statistician",
            )
            # then the job runs on the worker and links to its model
            expect(page.locator("[data-status]")).to_have_text("Succeeded", timeout=300_000)
            page.click("#model-link")
            expect(page.locator("h1")).to_contain_text("form statistician")
            page.screenshot(path=str(shots / "model.png"), full_page=True)

            # "Draw samples": three sevens in, samples shown beside them
            page.click("#draw-samples")
            page.wait_for_url("**/samples/")
            page.set_input_files("input[name=support]", files(digit_pngs(7, 3)))
            page.fill("input[name=count]", "6")
            page.click("form[data-try-it] button[type=submit]")
            expect(page.locator("#samples img")).to_have_count(6, timeout=60_000)
            expect(page.locator("#sample-support img")).to_have_count(3)
            page.screenshot(path=str(shots / "samples.png"), full_page=True)
            # a file that is not an image is refused in the page, naming it
            page.set_input_files("input[name=support]", files([("notes.txt", b"not a picture")]))
            page.click("form[data-try-it] button[type=submit]")
            expect(page.locator(".form-errors")).to_contain_text("support[0] notes.txt", timeout=60_000)

            # "Try it": two labels of two images each, and a query
            page.goto(page.url.replace("/samples/", "/try/"))
            for row, digit in enumerate((4, 5)):
                page.fill(f"input[name=label_{row}]", f"digit {digit}")
                page.set_input_files(f"input[name=support_{row}]", files(digit_pngs(digit, 2)))
            page.set_input_files("input[name=query]", files(digit_pngs(4, 1, start=9)))
            page.click("form[data-try-it] button[type=submit]")
            expect(page.locator(".prediction-label")).to_have_count(1, timeout=60_000)
            assert page.locator(".prediction-label").inner_text() in ("digit 4", "digit 5")
            page.screenshot(path=str(shots / "try.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
