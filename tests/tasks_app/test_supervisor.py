"""The run command's supervisor: restarts with backoff, cleans up process groups, stops everything."""

from __future__ import annotations

import time

import psutil
import pytest

from tasks_app.supervisor import Supervisor

pytestmark = pytest.mark.slow


def _poll_for(supervisor: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        supervisor.poll()
        time.sleep(0.05)


def test_a_child_that_keeps_failing_is_restarted_with_a_doubling_delay():
    # given a child that exits at once, every time
    said: list[str] = []
    exits: list[int] = []
    supervisor = Supervisor(say=said.append)
    supervisor.start("crasher", ["-c", "import sys; sys.exit(3)"], on_exit=exits.append)

    # when it is supervised for a few seconds
    _poll_for(supervisor, 4.5)
    supervisor.stop(grace_s=1)

    # then every exit was reported with its status, and the delays grew 1, 2, 4 s
    delays = [line.rsplit("restarting in ", 1)[1] for line in said if "exited with status 3" in line]
    assert delays[:3] == ["1 s.", "2 s.", "4 s."], said
    assert exits[:3] == [3, 3, 3]
    assert sum("restarted" in line for line in said) == len(delays) - 1


def test_a_dead_child_s_leftover_processes_are_killed_and_stop_ends_every_group():
    # given a child whose own child (a "pool process") sleeps in its process group
    supervisor = Supervisor(say=lambda line: None)
    parent = supervisor.start(
        "leader",
        [
            "-c",
            "import subprocess, sys, time;"
            " subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(1.5)",
        ],
    )
    time.sleep(0.8)
    orphan = psutil.Process(parent.proc.pid).children()[0]

    # when the leader exits on its own
    _poll_for(supervisor, 2.0)

    # then its group, orphan included, is gone, and it was restarted
    orphan.wait(timeout=5)
    assert not orphan.is_running()
    assert parent.restarts == 1

    # and stop() leaves none of its processes behind
    leader = psutil.Process(parent.proc.pid)
    supervisor.stop(grace_s=1)
    assert not leader.is_running() or leader.status() == psutil.STATUS_ZOMBIE


def test_a_failing_clean_up_is_reported_and_supervision_goes_on():
    # given a child whose clean-up raises (the database was down, say)
    said: list[str] = []

    def broken(status: int) -> None:
        raise RuntimeError("database is down")

    supervisor = Supervisor(say=said.append)
    child = supervisor.start("crasher", ["-c", "import sys; sys.exit(1)"], on_exit=broken)

    # when it exits
    _poll_for(supervisor, 1.5)
    supervisor.stop(grace_s=1)

    # then the failure is said, and the child was restarted all the same
    assert any("clean-up after its exit failed: database is down" in line for line in said), said
    assert child.restarts >= 1
