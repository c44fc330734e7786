"""Text domains: a labeled text file checked, embedded once by the real sentence encoder, stored as
``TextArrays``; uploads always become import jobs, and bad files are refused before anything is written."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from learning.artifacts import artifact_read
from learning.domain_layout import ImportStopped
from learning.engine.data import load_text_arrays
from learning.engine.text_encoder import EMBEDDING_DIM, ENCODER
from learning.errors import InvalidInput
from learning.models import SourceDomain
from learning.services.text_domains import text_domain_import
from tasks_app.models import Job

pytestmark = pytest.mark.django_db

INTENTS = {
    "greet": ["hello there", "hi, how are you", "good morning", "hey"],
    "bye": ["see you later", "goodbye", "bye for now", "talk to you soon"],
    "weather": ["will it rain today", "how warm is it outside", "is it sunny", "forecast for tomorrow"],
}


def csv_file(name: str = "intents.csv", intents: dict = INTENTS) -> SimpleUploadedFile:
    lines = ["text,label,group"] + [f'"{t}",{label},chat' for label, texts in intents.items() for t in texts]
    return SimpleUploadedFile(name, "\n".join(lines).encode(), content_type="text/csv")


def files_under(root: Path, folder: str) -> list[Path]:
    return [p for p in (root / folder).rglob("*") if p.is_file()] if (root / folder).exists() else []


def test_a_text_file_is_embedded_once_and_stored_with_its_labels_and_examples(user, artifacts_in_tmp):
    progress: list[tuple[int, int]] = []

    domain = text_domain_import(
        source=csv_file(), name="Small talk", owner=user, on_progress=lambda d, t: progress.append((d, t))
    )

    assert domain.modality == SourceDomain.Modality.TEXT_CLASSIFICATION and domain.is_text
    assert (domain.class_count, domain.example_count, domain.engine_domain) == (3, 12, "text")
    assert [c["name"] for c in domain.classes] == ["bye", "greet", "weather"]
    assert domain.classes[1]["examples"] == INTENTS["greet"][:3] and domain.classes[1]["group"] == "chat"
    assert domain.class_groups == [{"name": "chat", "class_count": 3}]
    arrays = load_text_arrays(io.BytesIO(artifact_read(domain.arrays_file)))
    assert arrays.embeddings.shape == (12, EMBEDDING_DIM) and arrays.encoder == ENCODER
    assert np.allclose(np.linalg.norm(arrays.embeddings, axis=1), 1, atol=1e-5)
    assert arrays.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert progress and progress[-1] == (12, 12)

    # the same texts again are the same content, refused by name, with nothing more written
    before = files_under(artifacts_in_tmp, "domains")
    with pytest.raises(InvalidInput, match="already in the catalog as domain 'Small talk'"):
        text_domain_import(source=csv_file("again.csv"), name="Small talk 2", owner=user)
    assert files_under(artifacts_in_tmp, "domains") == before


def test_a_stopped_import_writes_nothing(user, artifacts_in_tmp):
    with pytest.raises(ImportStopped):
        text_domain_import(source=csv_file(), name="Stopped", owner=user, should_stop=lambda: True)

    assert not SourceDomain.objects.filter(name="Stopped").exists()
    assert files_under(artifacts_in_tmp, "domains") == []


def test_an_uploaded_text_file_is_always_an_import_job_and_a_bad_one_is_refused_at_once(
    user_client, artifacts_in_tmp
):
    # a small CSV still becomes a job: its texts are embedded on a worker
    response = user_client.post("/api/v1/domains/", {"name": "Talk", "file": csv_file()}, format="multipart")
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job"])
    assert job.kind == "import" and job.config["filename"] == "intents.csv"
    assert [p.suffix for p in files_under(artifacts_in_tmp, "imports")] == [".csv"]

    # a file with one label, or not UTF-8, is refused naming the problem, and nothing is queued
    bad = {
        "lonely.csv": b"text,label\nhi,a\nhello,a\n",
        "latin.jsonl": '{"text": "caf\xe9", "label": "a"}\n'.encode("latin-1"),
    }
    for name, content in bad.items():
        upload = SimpleUploadedFile(name, content)
        response = user_client.post("/api/v1/domains/", {"name": name, "file": upload}, format="multipart")
        assert response.status_code == 400, response.json()
        assert name in response.json()["file"][0]
    assert Job.objects.count() == 1 and len(files_under(artifacts_in_tmp, "imports")) == 1


def test_the_upload_page_takes_a_text_file_to_its_import_job(client, user, artifacts_in_tmp):
    client.force_login(user)

    response = client.post("/domains/new/", {"name": "Talk", "source": csv_file(), "visibility": "public"})

    job = Job.objects.get(kind="import")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    # whose page counts the texts embedded
    job.phase, job.phase_total = "importing", 12
    job.save(update_fields=["phase", "phase_total"])
    assert (
        "importing: text <strong data-phase-done>0</strong>"
        in client.get(response["Location"]).content.decode()
    )
