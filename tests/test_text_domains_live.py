"""Text domains end to end on the system `make run` starts: a CSV of real CLINC150 utterances imported
as a job (its texts embedded on the worker), a ProtoNet meta-trained on it from the API and from the
web form, then labeling texts through the API and the model's "Try it" page in headless Chromium.

Screenshots go to ``test-artifacts/text/``.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from learning.engine.text_corpora import load_clinc150
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.runkb import Client, RunningSystem, wait_until

pytestmark = pytest.mark.slow

INTENTS = 12
TEXTS_PER_INTENT = 20
PASSWORD = "a long pass phrase 42"
SMALL = {"steps": 30, "meta_batch": 2}


@pytest.fixture
def system(tmp_path):
    running = RunningSystem(tmp_path / "var")
    yield running
    running.kill_everything()


def clinc_sample() -> tuple[bytes, dict[str, list[str]]]:
    """A CSV (text, label) of the first 20 utterances of 12 CLINC150 intents, and the unused rest."""
    corpus = load_clinc150(("train",))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    unused: dict[str, list[str]] = {}
    for c, name in enumerate(corpus.class_names[:INTENTS]):
        texts = [t for t, label in zip(corpus.texts, corpus.labels, strict=True) if label == c]
        writer.writerows([t, name] for t in texts[:TEXTS_PER_INTENT])
        unused[name] = texts[TEXTS_PER_INTENT:]
    return out.getvalue().encode(), unused


def finished(client: Client, job_id: int, timeout: float = 300) -> dict:
    job = wait_until(
        lambda: (j := client.job(job_id))["status"] in ("succeeded", "failed", "cancelled") and j,
        timeout=timeout,
        message=lambda: f"{client.job(job_id)}\n{client.system.output[-4000:]}",
    )
    assert job["status"] == "succeeded", f"{job['error_summary']}\n{job['error_traceback']}"
    return job


def test_a_text_domain_is_imported_trained_on_and_used_through_the_api_and_the_pages(system, monkeypatch):
    system.wait_until_serving()
    ada = Client.sign_up(system, "ada", PASSWORD)
    content, unused = clinc_sample()

    # when ada uploads a CSV with a single label, it is refused at once, naming the problem
    status, body = ada.upload(
        "/api/v1/domains/", {"name": "one label"}, {"file": ("one.csv", b"text,label\nhi,a\n")}
    )
    assert status == 400 and "only one label" in str(body), body

    # when she uploads the CSV of 12 intents
    status, body = ada.upload(
        "/api/v1/domains/", {"name": "CLINC sample"}, {"file": ("intents.csv", content)}
    )

    # then it is an import job whose worker embeds every text, and the domain appears
    assert status == 202, body
    job = finished(ada, body["job"])
    status, domain = ada.call("GET", f"/api/v1/domains/{job['domain']}/")
    assert status == 200, domain
    assert domain["modality"] == "text_classification"
    assert (domain["class_count"], domain["example_count"]) == (INTENTS, INTENTS * TEXTS_PER_INTENT)

    # when she meta-trains a ProtoNet on it through the API
    status, body = ada.call(
        "POST",
        "/api/v1/jobs/",
        {
            "domain": domain["slug"],
            "algorithm": "protonet",
            "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
            "hyperparameters": SMALL,
            "model_name": "api text protonet",
        },
    )
    assert status == 201, body
    model_id = finished(ada, body["id"])["result_model"]

    # then the model is a text model with its evaluation on held-out intents
    status, model = ada.call("GET", f"/api/v1/models/{model_id}/")
    assert status == 200 and model["architecture"] == "text_mlp"
    status, evaluations = ada.call("GET", f"/api/v1/evaluations/?model={model_id}")
    assert evaluations["count"] >= 1 and evaluations["results"][0]["episodes"] >= 600

    # and it labels texts from a few labeled examples through the API
    a, b = list(unused)[:2]
    request = {
        "support": [{"text": t, "label": name} for name in (a, b) for t in unused[name][:3]],
        "query": [unused[a][5], unused[b][5]],
    }
    status, answer = ada.call("POST", f"/api/v1/models/{model_id}/predict/", request)
    assert status == 200, answer
    assert answer["labels"] == [a, b] and [p["query"] for p in answer["predictions"]] == request["query"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-6 for p in answer["predictions"])
    status, answer = ada.call("POST", f"/api/v1/models/{model_id}/predict/", {**request, "query": [" "]})
    assert status == 400 and "query[0] must be a non-empty text" in str(answer)

    # when she walks the domain's page, launches from the web form and tries the model, in a browser
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    shots = Path(settings.BASE_DIR) / "test-artifacts" / "text"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.goto(f"{system.base}/accounts/login/?next=/domains/{domain['slug']}/")
            page.fill("input[name=username]", "ada")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"**/domains/{domain['slug']}/")
            # the domain's page lists every intent with example texts
            expect(page.locator("#text-labels tbody tr")).to_have_count(INTENTS)
            expect(page.locator("#text-labels")).to_contain_text(a)
            page.screenshot(path=str(shots / "domain.png"), full_page=True)
            # and fits a phone without sideways scrolling (long texts wrap or scroll inside their panel)
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= 391
            page.screenshot(path=str(shots / "domain-390.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 1000})

            page.goto(f"{system.base}/jobs/new/")
            page.select_option("select[name=domain]", domain["slug"])
            page.select_option("select[name=algorithm]", "protonet")
            page.fill("input[name=n_way]", "5")
            page.fill("input[name=query_size]", "5")
            page.fill("input[name=steps]", str(SMALL["steps"]))
            name = f"form text protonet {uuid.uuid4().hex[:6]}"
            page.fill("input[name=model_name]", name)
            page.click("#launch")
            page.wait_for_url("**/jobs/*/")
            expect(page.locator("[data-status]")).to_have_text("Succeeded", timeout=300_000)
            page.click("#model-link")
            expect(page.locator("h1")).to_contain_text(name)

            # "Try it": two labels with three examples each, and two queries
            page.click("text=Try it")
            page.wait_for_url("**/try/")
            for row, intent in enumerate((a, b)):
                page.fill(f"input[name=label_{row}]", intent)
                page.fill(f"textarea[name=examples_{row}]", "\n".join(unused[intent][:3]))
            page.fill("textarea[name=query_texts]", f"{unused[a][6]}\n{unused[b][6]}")
            page.click("form[data-try-it] button[type=submit]")
            expect(page.locator(".prediction-label")).to_have_count(2, timeout=60_000)
            labels = page.locator(".prediction-label").all_inner_texts()
            assert set(labels) <= {a, b}
            page.screenshot(path=str(shots / "try.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
