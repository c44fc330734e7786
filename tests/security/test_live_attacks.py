"""The attacks of issue 10, each made against the real server (``runkb``) over HTTP.

Every test asserts the status, the exact refusal, and that nothing was written: no rows
(as the API lists them to their owner) and no files in artifact storage. The hostile
zips, the SSRF variants that need a fake resolver, and the parsers are tested in depth
through Django in the other modules of this package; these prove the same refusals hold
on the path users run.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import uuid
import zipfile

import pytest
import torch

from learning.engine.checkpoints import pack_blob
from learning.engine.weights import WEIGHTS_FORMAT
from learning.url_fetch import REFUSED
from tests.learning.factories import make_image_zip
from tests.learning.test_import_domain import BAD_ZIPS
from tests.runkb import Client, RunningSystem
from tests.security.conftest import LIVE_LIMITS, MiB, temporary_files
from tests.security.local_http import local_server, serve_files
from tests.weights import model_weights

pytestmark = pytest.mark.slow


def _name() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _files(system: RunningSystem, folder: str) -> set[str]:
    """The files in one folder of the system's artifact storage."""
    return {p.name for p in (system.var_dir / "artifacts" / folder).glob("*")}


def _count(client: Client, path: str) -> int:
    status, body = client.call("GET", path)
    assert status == 200, body
    return body["count"]


@pytest.fixture
def ada(live_system) -> Client:
    return Client.sign_up(live_system, _name())


# --- 1. SSRF --------------------------------------------------------------------------------------


def test_an_import_from_a_listener_on_this_machine_is_refused_and_never_contacted(live_system, ada, tmp_path):
    zip_path = make_image_zip(tmp_path, {"a": 3, "b": 3})
    domains = _count(ada, "/api/v1/domains/")
    stored = _files(live_system, "domains")
    with local_server(serve_files(zip_path.parent)) as server:
        status, body = ada.call("POST", "/api/v1/domains/", {"name": "ok", "url": server.url("/images.zip")})
        assert server.requests == []
    assert (status, body) == (400, {"url": [REFUSED]})
    assert _count(ada, "/api/v1/domains/") == domains
    assert _files(live_system, "domains") == stored


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data.zip", "http://10.0.0.1/set.zip", "http://[::1]:8000/x.zip"],
)
def test_an_import_from_an_internal_address_gets_the_one_refusal(live_system, ada, url):
    assert ada.call("POST", "/api/v1/domains/", {"name": "x", "url": url}) == (400, {"url": [REFUSED]})


# --- Hostile zips ---------------------------------------------------------------------------------


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/0.bmp", b"\0" * (64 * MiB))
        archive.writestr("b/0.bmp", b"\0" * (64 * MiB))
    return buffer.getvalue()


HOSTILE_ZIPS = {**BAD_ZIPS, "a zip bomb": (_zip_bomb, "at most 50x its size")}


@pytest.mark.parametrize("case", list(HOSTILE_ZIPS))
def test_a_hostile_zip_is_refused_and_nothing_is_written(live_system, ada, case):
    build, expected = HOSTILE_ZIPS[case]
    domains = _count(ada, "/api/v1/domains/")
    stored = _files(live_system, "domains")
    temporary = temporary_files(live_system)
    status, body = ada.upload("/api/v1/domains/", {"name": "Bad"}, {"file": ("bad.zip", build())})
    assert status == 400, body
    assert list(body) == ["file"] and expected in body["file"][0], body
    assert _count(ada, "/api/v1/domains/") == domains
    assert _files(live_system, "domains") == stored
    assert temporary_files(live_system) == temporary


# --- 3. Weights are untrusted ---------------------------------------------------------------------


def _file(model_config: dict, algorithm: str, tensors: dict | None = None) -> bytes:
    return pack_blob(
        tensors or {"w": torch.zeros(1)},
        {"model_config": model_config, "algorithm": algorithm},
        fmt=WEIGHTS_FORMAT,
    )


HOSTILE_WEIGHTS = {
    "huge-mlp": (
        ("maml", "mlp", _file({"arch": "mlp", "hidden": [16000, 16000], "adapt": {}}, "maml")),
        {"weights": ["the weights file's model_config.hidden: entries must be >= 1 and <= 1024, got 16000"]},
    ),
    "endless-adaptation": (
        (
            "maml",
            "conv4",
            _file(
                {"arch": "conv4", "head": "linear", "out_features": 5, "adapt": {"inner_steps": 10**9}},
                "maml",
            ),
        ),
        {
            "weights": [
                "the weights file's model_config.adapt.inner_steps: must be between 1 and 100, got 1000000000"
            ]
        },
    ),
    "other-algorithm": (
        ("protonet", "conv4", model_weights("maml")),
        {"algorithm": ["the weights file says 'maml', not 'protonet'"]},
    ),
    "other-architecture": (
        ("protonet", "mlp", model_weights("protonet")),
        {"architecture": ["the weights file says 'conv4', not 'mlp'"]},
    ),
    "no-such-model": (
        ("protonet", "mlp", _file({"arch": "mlp", "hidden": [8]}, "protonet")),
        {
            "algorithm": [
                "'protonet' has no models of architecture 'mlp'; "
                "known: ['cnp', 'fomaml', 'maml', 'np', 'pretrain', 'reptile']"
            ]
        },
    ),
    "tensors-of-another-net": (
        (
            "protonet",
            "conv4",
            _file({"arch": "conv4", "hidden": 8}, "protonet", {"features.0.weight": torch.zeros(4, 1, 3, 3)}),
        ),
        {
            "weights": [
                "the tensors do not fit the model_config: missing ['features.0.bias', 'features.1.bias', "
            ]
        },
    ),
    "not-metakb": (
        ("protonet", "conv4", pack_blob({"w": torch.zeros(2)}, {}, fmt="something-else")),
        {
            "weights": [
                "not a MetaKB weights file (expected format 'metakb-weights/1', got 'something-else'); "
                "write one with weights_to_bytes"
            ]
        },
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_WEIGHTS))
def test_weights_that_do_not_fit_what_they_claim_are_refused_at_upload(live_system, ada, case):
    (algorithm, architecture, blob), refusal = HOSTILE_WEIGHTS[case]
    models = _count(ada, "/api/v1/models/")
    stored = _files(live_system, "models")
    status, body = ada.upload(
        "/api/v1/models/",
        {"name": case, "algorithm": algorithm, "architecture": architecture},
        {"weights": ("w.safetensors", blob)},
    )
    assert status == 400, body
    if case == "tensors-of-another-net":
        assert body["weights"][0].startswith(refusal["weights"][0]), body
    else:
        assert body == refusal
    assert _count(ada, "/api/v1/models/") == models
    assert _files(live_system, "models") == stored


def test_weights_that_fit_are_stored_under_their_content_hash(live_system, ada):
    blob = model_weights("maml", seed=7)
    status, body = ada.upload(
        "/api/v1/models/",
        {"name": "fits", "algorithm": "maml", "architecture": "conv4", "visibility": "private"},
        {"weights": ("../../evil name.safetensors", blob)},
    )
    assert status == 201, body
    assert body["weights_size"] == len(blob)
    (stored,) = {p for p in _files(live_system, "models") if body["weights_sha256"][:32] in p}
    assert stored == f"{body['weights_sha256'][:32]}.safetensors"


# --- 4. Private names do not leak -----------------------------------------------------------------


def test_a_private_domain_neither_blocks_nor_names_itself_to_another_users_import(live_system, ada, tmp_path):
    archive = make_image_zip(tmp_path, {"a": 3, "b": 3, "c": 3}, variant=11).read_bytes()
    status, mine = ada.upload(
        "/api/v1/domains/",
        {"name": "Ada secret glyphs", "visibility": "private"},
        {"file": ("s.zip", archive)},
    )
    assert status == 201, mine
    bob = Client.sign_up(live_system, _name())
    status, theirs = bob.upload("/api/v1/domains/", {"name": "Bob glyphs"}, {"file": ("s.zip", archive)})
    assert status == 201, theirs
    assert "secret" not in json.dumps(theirs)
    # and the same bytes again from bob are refused, naming only what bob may see: his own
    status, again = bob.upload("/api/v1/domains/", {"name": "again"}, {"file": ("s.zip", archive)})
    assert (status, again) == (
        400,
        {"file": ["this content is already in the catalog as domain 'Bob glyphs' (bob-glyphs)"]},
    )


def test_a_job_on_a_private_domain_is_private_unless_its_owner_says_otherwise(live_system, ada, tmp_path):
    archive = make_image_zip(tmp_path, {c: 3 for c in "abcdefgh"}, variant=12).read_bytes()
    status, domain = ada.upload(
        "/api/v1/domains/",
        {"name": "Ada private marks", "visibility": "private"},
        {"file": ("p.zip", archive)},
    )
    assert status == 201, domain
    job = {
        "domain": domain["slug"],
        "algorithm": "protonet",
        "task": {"n_way": 2, "k_shot": 1, "query_size": 1},
        "hyperparameters": {"steps": 5, "meta_batch": 1, "model": {"hidden": 4}},
    }
    status, created = ada.call("POST", "/api/v1/jobs/", job)
    assert status == 201, created
    bob = Client.sign_up(live_system, _name())
    status, listing = bob.call("GET", "/api/v1/jobs/")
    assert status == 200 and created["id"] not in [j["id"] for j in listing["results"]]
    assert "Ada private marks" not in json.dumps(listing)
    assert bob.call("GET", f"/api/v1/jobs/{created['id']}/")[0] == 404
    anonymous = Client.anonymous(live_system)
    status, answer = anonymous.call("GET", f"/api/v1/jobs/{created['id']}/")
    assert status in (401, 403) and "Ada" not in json.dumps(answer)
    with urllib.request.urlopen(f"{live_system.base}/jobs/{created['id']}/", timeout=30) as page:
        assert "/accounts/login/" in page.url  # the page asks a visitor to log in, naming nothing
        assert "Ada private marks" not in page.read().decode()
    with pytest.raises(urllib.error.HTTPError) as page_for_bob:
        bob.opener.open(f"{live_system.base}/jobs/{created['id']}/", timeout=30)
    assert page_for_bob.value.code == 404
    status, specs = anonymous.call("GET", "/api/v1/task-specs/")
    assert created["task_spec"] not in [s["id"] for s in specs["results"]]


# --- 5. One declaration for every bound; unknown fields refused -----------------------------------


@pytest.mark.parametrize(
    ("job", "refusal"),
    [
        ({"hyperparameters": {"steps": 200001.0}}, {"steps": ["steps: must be an integer, got 200001.0"]}),
        ({"hyperparameters": {"steps": 1e7}}, {"steps": ["steps: must be an integer, got 10000000.0"]}),
        (
            {"hyperparameters": {"meta_batch": 4096.0}},
            {"meta_batch": ["meta_batch: must be an integer, got 4096.0"]},
        ),
        (
            {"hyperparameters": {"steps": 200001}},
            {"steps": ["steps: must be between 1 and 200000, got 200001"]},
        ),
        (
            {"steps": "many"},
            {
                "steps": [
                    "unknown field; known: algorithm, domain, eval_episodes, hyperparameters, kind, method, "
                    "model_name, source_model, task, task_spec, visibility"
                ]
            },
        ),
        (
            {"algorithm": "a/b/c"},
            {
                "algorithm": [
                    "unknown algorithm 'a/b/c' for image classification; "
                    "choose one of maml, fomaml, protonet, reptile, siamese, statistician"
                ]
            },
        ),
    ],
    ids=[
        "float-steps",
        "exponent-steps",
        "float-meta-batch",
        "too-many-steps",
        "unknown-field",
        "path-algorithm",
    ],
)
def test_a_job_outside_its_declared_bounds_is_refused_naming_the_field(live_system, ada, job, refusal):
    jobs = _count(ada, "/api/v1/jobs/")
    status, body = ada.call("POST", "/api/v1/jobs/", {"domain": "digits", "algorithm": "protonet", **job})
    assert (status, body) == (400, refusal)
    assert _count(ada, "/api/v1/jobs/") == jobs


# --- 7. Errors -----------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_json_400(live_system, ada):
    status, model = ada.upload(
        "/api/v1/models/",
        {"name": "deep", "algorithm": "protonet", "architecture": "conv4"},
        {"weights": ("w.safetensors", model_weights("protonet", seed=3))},
    )
    assert status == 201, model
    deep = ("[" * 50_000 + "]" * 50_000).encode()
    for path in ("/api/v1/jobs/", f"/api/v1/models/{model['id']}/predict/"):
        assert ada.send("POST", path, deep, "application/json") == (
            400,
            {"detail": "JSON parse error - the document is nested too deeply"},
        )


def test_a_json_body_over_the_limit_is_a_json_413(live_system, ada):
    body = b'{"a": "' + b"x" * (5 * LIVE_LIMITS["REQUEST_MAX_BYTES"]) + b'"}'
    limit = LIVE_LIMITS["REQUEST_MAX_BYTES"] + MiB
    assert ada.send("POST", "/api/v1/jobs/", body, "application/json") == (
        413,
        {"detail": f"the request body is larger than {limit:,} bytes (setting REQUEST_MAX_BYTES)"},
    )


def test_errors_show_no_debug_pages(live_system):
    anonymous = Client.anonymous(live_system)
    status, page = anonymous.send("GET", "/no/such/page/", None, "text/html")
    assert status == 404
    assert "Traceback" not in page["raw"] and "DEBUG" not in page["raw"] and "urlpatterns" not in page["raw"]
    assert (
        anonymous.call("GET", "/api/v1/models/999999/")
        == (404, {"detail": "No MetaModel matches the given query."})
        or anonymous.call("GET", "/api/v1/models/999999/")[0] == 404
    )


# --- 6. Throttles --------------------------------------------------------------------------------


def test_wrong_passwords_on_the_token_endpoint_end_in_429_with_retry_after(tmp_path):
    system = RunningSystem(tmp_path / "var", "--no-worker", THROTTLE_AUTH="5/min")
    try:
        system.wait_until_serving()
        wrong = json.dumps({"username": "admin", "password": "wrong"}).encode()
        answers = []
        for _ in range(6):
            request = urllib.request.Request(
                f"{system.base}/api/v1/auth/token/", data=wrong, headers={"Content-Type": "application/json"}
            )
            try:
                urllib.request.urlopen(request, timeout=30)
            except urllib.error.HTTPError as error:
                answers.append((error.code, error.headers.get("Retry-After"), json.loads(error.read())))
        assert [code for code, _, _ in answers] == [400] * 5 + [429]
        _, retry_after, body = answers[-1]
        assert retry_after is not None and 0 < int(retry_after) <= 60
        assert body["detail"].startswith("Request was throttled.")
        assert system.stop() == 0
    finally:
        system.kill_everything()
