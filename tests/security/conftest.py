"""The real system for the security tests that attack it over sockets: ``manage.py runkb``.

One system serves the whole session (it takes about 15 s to start), without a worker so
that nothing a test queues runs. Its limits are small, so that a body 10x over a limit
is quick to send.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runkb import RunningSystem

MiB = 1024 * 1024
LIVE_LIMITS = {"REQUEST_MAX_BYTES": 2 * MiB, "IMPORT_MAX_BYTES": 3 * MiB, "MODEL_WEIGHTS_MAX_BYTES": 4 * MiB}
"""The body limits of the live system (each gets 1 MiB more for the multipart envelope)."""


@pytest.fixture(scope="session")
def live_system(tmp_path_factory) -> Iterator[RunningSystem]:
    settings = {name: str(value) for name, value in LIVE_LIMITS.items()}
    var = tmp_path_factory.mktemp("live-security")
    # Its own temporary folder, so that tests can see that a refused upload leaves nothing there.
    (var / "tmp").mkdir()
    system = RunningSystem(var, "--no-worker", TMPDIR=str(var / "tmp"), **settings)
    try:
        system.wait_until_serving()
        yield system
        assert system.stop() == 0, system.output[-4000:]
    finally:
        system.kill_everything()


def temporary_files(system: RunningSystem) -> list[str]:
    """What is in the live system's temporary folder (the embedded Redis keeps a folder there)."""
    return sorted(p.name for p in (system.var_dir / "tmp").iterdir())
