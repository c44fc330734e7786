"""Schemathesis over the whole OpenAPI schema, against the real server that `make run` starts.

One ``runkb`` process (no worker: jobs stay queued) serves a user who owns a private domain,
a task spec, jobs, models and an evaluation. ``st run`` loads ``/api/schema/`` from it and
sends every operation its generated requests (examples, coverage and fuzzing phases), once
with the user's token and once anonymously. ``schema_fuzz_hooks`` puts the user's real ids
into half the path parameters and body references, so details, ``cancel`` and ``predict``
are fuzzed past their 404. No answer may be a 5xx, and every answer must match its schema.

``status_code_conformance`` is not checked: the schema documents each operation's success
codes only, not the 400/401/403/404 answers that refuse hostile input.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.learning.factories import png_bytes
from tests.runkb import Client, RunningSystem
from tests.weights import architecture, model_weights

pytestmark = pytest.mark.slow

EXAMPLES = 40
"""Generated requests per operation in the fuzzing phase: the file takes about 2 minutes on 2 cores."""
CHECKS = "not_a_server_error,response_schema_conformance"
HOOKS = Path(__file__).with_name("schema_fuzz_hooks.py")
SERVER_ENV = {
    # the fuzzer's thousands of requests from one address must not turn into 429s
    **{f"THROTTLE_{name}": "1000000/min" for name in ("AUTH", "PREDICT_ANON", "PREDICT_USER", "JOBS")},
    # generated URLs must not reach out from a CI machine; tests/security/test_url_import.py covers them
    "IMPORT_FROM_URL": "false",
}


def _letters_zip() -> bytes:
    """Five classes of eight small PNGs: enough for 2-way task specs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for c, name in enumerate("abcde"):
            for i in range(8):
                archive.writestr(f"{name}/{i}.png", png_bytes(100 * c + i))
    return buffer.getvalue()


def _created(answer: tuple[int, dict]) -> dict:
    status, body = answer
    assert status == 201, body
    return body


def _register(client: Client, algorithm: str) -> int:
    fields = {"name": f"fuzz {algorithm}", "algorithm": algorithm, "architecture": architecture(algorithm)}
    weights = {"weights": ("weights.safetensors", model_weights(algorithm))}
    return _created(client.upload("/api/v1/models/", fields, weights))["id"]


def _give_data(client: Client) -> tuple[dict[str, list], dict[str, list]]:
    """The user's own rows, one or more of each kind.

    Returns the real values for path parameters (by path template) and for body fields (by name).
    """
    fields, files = {"name": "letters", "visibility": "private"}, {"file": ("letters.zip", _letters_zip())}
    domain = _created(client.upload("/api/v1/domains/", fields, files))
    shape = {"domain": domain["slug"], "n_way": 2, "query_size": 3}
    spec = _created(client.call("POST", "/api/v1/task-specs/", shape))
    job = {"domain": "digits", "algorithm": "protonet", "hyperparameters": {"steps": 40}}
    jobs = [_created(client.call("POST", "/api/v1/jobs/", job))["id"] for _ in range(2)]
    models = [_register(client, "protonet"), _register(client, "cnp")]  # predict: images and functions
    result = {"shots": 1, "metric": "accuracy", "mean": 0.5, "ci95": 0.02, "episodes": 600}
    evaluation = _created(
        client.call(
            "POST", "/api/v1/evaluations/", {"model": models[0], "target_domain": domain["slug"], **result}
        )
    )
    domains = [domain["slug"], "digits", "gp-1d"]
    paths = {
        "/api/v1/domains/{slug}/": domains,
        "/api/v1/task-specs/{id}/": [spec["id"]],
        "/api/v1/jobs/{id}/": jobs,
        "/api/v1/jobs/{id}/cancel/": jobs,
        "/api/v1/models/{id}/": models,
        "/api/v1/models/{id}/predict/": models,
        "/api/v1/evaluations/{id}/": [evaluation["id"]],
    }
    references = {
        "domain": domains,
        "target_domain": domains,
        "trained_on": [[slug] for slug in domains],
        "model": models,
        "source_model": models,
        "parent": models,
        "task_spec": [spec["id"]],
    }
    return paths, references


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The running system, its user (who has data), and the real values of that data."""
    system = RunningSystem(tmp_path_factory.mktemp("fuzz") / "var", "--no-worker", **SERVER_ENV)
    try:
        system.wait_until_serving()
        user = Client.sign_up(system, "fuzzer")
        yield system, user, *_give_data(user)
    finally:
        system.kill_everything()


@pytest.mark.parametrize("who", ["user", "anonymous"])
def test_every_operation_answers_without_a_server_error_and_as_its_schema_says(live, who, tmp_path):
    # given the live schema, and the user's token or none
    system, user, paths, references = live
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run"),  # `st run`
        f"{system.base}/api/schema/?format=json",
        f"--checks={CHECKS}",
        "--phases=examples,coverage,fuzzing",
        f"--max-examples={EXAMPLES}",
        "--generation-deterministic",
        "--continue-on-failure",
        "--request-timeout=60",
        "--no-color",
    ]
    if who == "user":
        command.append(f"--header=Authorization: Token {user.token}")
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "FUZZ_REAL_IDS": json.dumps(paths),
        "FUZZ_REFERENCES": json.dumps(references),
    }

    # when Schemathesis sends every operation its generated requests (from a scratch folder:
    # it looks for a schemathesis.toml where it runs)
    run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    # then no answer is a 5xx and every answer matches the schema
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-4_000:] + system.output[-6_000:]
