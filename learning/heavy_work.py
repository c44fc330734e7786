"""Heavy request work (image decoding, predictions, domain imports) in a bounded pool with a deadline.

Under daphne, Django runs each sync view in a thread of its own (one per request, off the
event loop), so sixteen predict requests at once were sixteen threads fighting over the
cores while a light page waited behind them. :func:`run_heavy` bounds that: the work
still runs in the request's thread, but only once it holds one of the pool's slots.

Settings (read where used, with these defaults):

- ``HEAVY_WORK_SLOTS`` (the CPU cores less one): computations at once. Each runs with
  ``cores // slots`` torch threads (at least 1), so they do not oversubscribe the cores.
- ``HEAVY_WORK_QUEUE`` (2 x slots): requests that may wait for a slot; one more is
  refused at once.
- ``HEAVY_WORK_WAIT_S`` (2): seconds a request waits for a slot before it is refused.
- ``HEAVY_WORK_DEADLINE_S`` (30): seconds a computation may run.
- ``HEAVY_WORK_IMPORT_DEADLINE_S`` (300): the same for a domain import (:func:`import_deadline_s`).

A refused request gets :class:`Busy` (503 with ``Retry-After``). Past its deadline, or
once its client has disconnected, :func:`should_stop` turns true; the engine polls it
between inner steps and the decoders between images, and the work ends with
:class:`DeadlineExceeded` (504) or :class:`ClientGone`. Stopping is cooperative, as
Python cannot kill a thread: code that runs long must poll.

Disconnects are seen by :func:`watch_disconnects`, the ASGI wrapper in ``kbsite.asgi``:
it marks the request when the server passes on ``http.disconnect``. Under the test
client (no ASGI) only the deadline applies.

    result = run_heavy(predict.predict_classification, model=model, support=..., query=...)
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from django.conf import settings

logger = logging.getLogger(__name__)

R = TypeVar("R")

RETRY_AFTER_S = 5
"""The ``Retry-After`` a refused request gets, in seconds."""


def cpu_count() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def import_deadline_s() -> float:
    """The deadline of a domain import made by a request (``HEAVY_WORK_IMPORT_DEADLINE_S``)."""
    return float(settings.HEAVY_WORK_IMPORT_DEADLINE_S)


# --- Errors ------------------------------------------------------------------------------


class HeavyWorkError(Exception):
    """Heavy work that was refused or stopped; ``status``, ``headers`` and ``as_dict()`` make the answer."""

    status = 503
    code = "busy"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    def as_dict(self) -> dict[str, str]:
        """The API's body: ``{"detail": message, "code": "busy" | "deadline_exceeded" | "client_gone"}``."""
        return {"detail": self.message, "code": self.code}


class Busy(HeavyWorkError):
    """Every slot was taken (and the queue full, or no slot came free in time): 503, retry later."""

    status = 503
    code = "busy"


class DeadlineExceeded(HeavyWorkError):
    """The computation ran past its deadline and was stopped: 504 (the same request would time out again)."""

    status = 504
    code = "deadline_exceeded"


class ClientGone(HeavyWorkError):
    """The client disconnected and the computation was stopped; nobody reads this answer."""

    status = 499
    code = "client_gone"


# --- The pool ----------------------------------------------------------------------------


class _Pool:
    """``slots`` computations at once; at most ``queue`` callers wait for a slot."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots = slots
        self.queue = queue
        self.torch_threads = max(1, cpu_count() // slots)
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0
        self._threads_before = 0

    def acquire(self, wait_s: float) -> None:
        """Take a slot, waiting at most ``wait_s`` seconds; :class:`Busy` if none."""
        if self._free.acquire(blocking=False):
            return
        with self._lock:
            full = self._waiting >= self.queue
            if not full:
                self._waiting += 1
        if full:
            raise Busy(
                f"the server is busy: all {self.slots} slots for heavy work are taken and "
                f"{self.queue} requests are waiting; retry in {RETRY_AFTER_S} s",
                retry_after=RETRY_AFTER_S,
            )
        try:
            if not self._free.acquire(timeout=wait_s):
                raise Busy(
                    f"the server is busy: no slot for heavy work came free within {wait_s:g} s; "
                    f"retry in {RETRY_AFTER_S} s",
                    retry_after=RETRY_AFTER_S,
                )
        finally:
            with self._lock:
                self._waiting -= 1

    def release(self) -> None:
        self._free.release()

    def start_work(self) -> None:
        """Give torch ``torch_threads`` while any work runs. Its thread count is process-wide, so
        it is set by the first work to start and restored by the last to end, not per call."""
        with self._lock:
            if self._running == 0:
                self._threads_before = torch.get_num_threads()
                torch.set_num_threads(self.torch_threads)
            self._running += 1

    def end_work(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                torch.set_num_threads(self._threads_before)


_pools: dict[tuple[int, int], _Pool] = {}
_pools_lock = threading.Lock()


def _pool() -> _Pool:
    """The pool for the current settings (a changed setting, as in a test, gets a new pool)."""
    slots = max(1, int(settings.HEAVY_WORK_SLOTS))
    queue = max(0, int(settings.HEAVY_WORK_QUEUE))
    with _pools_lock:
        if (slots, queue) not in _pools:
            _pools[(slots, queue)] = _Pool(slots, queue)
        return _pools[(slots, queue)]


# --- Stopping ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Work:
    deadline: float
    """``time.monotonic()`` after which the work must stop."""
    deadline_s: float
    client_gone: threading.Event | None


_work: contextvars.ContextVar[_Work | None] = contextvars.ContextVar("heavy_work", default=None)
_client_gone: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "heavy_work_client_gone", default=None
)


def _stop_reason() -> HeavyWorkError | None:
    work = _work.get()
    if work is None:
        return None
    if work.client_gone is not None and work.client_gone.is_set():
        return ClientGone("the client disconnected, so its computation was stopped")
    if time.monotonic() >= work.deadline:
        return DeadlineExceeded(
            f"the computation ran past its {work.deadline_s:g} s deadline and was stopped; "
            "send fewer or smaller images, or use a model with fewer adaptation steps"
        )
    return None


def should_stop() -> bool:
    """Whether the heavy work running in this context must stop (deadline passed or client gone)."""
    return _stop_reason() is not None


def raise_if_stopped() -> None:
    """Raise :class:`DeadlineExceeded` or :class:`ClientGone` if the current work must stop; else nothing.

    Outside :func:`run_heavy` (a management command, a Celery task) it never raises.
    """
    reason = _stop_reason()
    if reason is not None:
        raise reason


def run_heavy(fn: Callable[..., R], *args: Any, deadline_s: float | None = None, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)`` in a slot of the pool, with a deadline; its result or its exception.

    Raises :class:`Busy` when no slot is free (nothing ran); :class:`DeadlineExceeded` or
    :class:`ClientGone` when ``fn`` polled :func:`should_stop` / :func:`raise_if_stopped`
    and stopped. ``deadline_s`` defaults to ``HEAVY_WORK_DEADLINE_S``.
    """
    pool = _pool()
    pool.acquire(float(settings.HEAVY_WORK_WAIT_S))
    if deadline_s is None:
        deadline_s = float(settings.HEAVY_WORK_DEADLINE_S)
    token = _work.set(_Work(time.monotonic() + deadline_s, deadline_s, _client_gone.get()))
    pool.start_work()
    try:
        raise_if_stopped()
        return fn(*args, **kwargs)
    except (DeadlineExceeded, ClientGone) as exc:
        logger.warning("%s stopped: %s", getattr(fn, "__qualname__", fn), exc.message)
        raise
    finally:
        pool.end_work()
        _work.reset(token)
        pool.release()


# --- Disconnects -------------------------------------------------------------------------

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def watch_disconnects(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: an HTTP request whose client disconnects has its heavy work stopped.

    Django's ASGI handler keeps reading ``receive()`` while the view runs; when the server
    passes on ``http.disconnect``, this marks an event that the request's context (copied
    into the view's thread) carries, and :func:`should_stop` turns true.
    """

    async def watched(scope: dict, receive: Callable[[], Awaitable[dict]], send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        gone = threading.Event()
        _client_gone.set(gone)

        async def receive_watched() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            return message

        await app(scope, receive_watched, send)

    return watched


__all__ = [
    "Busy",
    "ClientGone",
    "DeadlineExceeded",
    "HeavyWorkError",
    "import_deadline_s",
    "raise_if_stopped",
    "run_heavy",
    "should_stop",
    "watch_disconnects",
]
