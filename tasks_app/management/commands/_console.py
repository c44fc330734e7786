"""A one-line progress bar for the job commands."""

from __future__ import annotations

import sys
from typing import Any


class ConsoleProgress:
    """Draws ``[#####-----] step/total loss ETA`` on one terminal line, from engine progress events."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stdout
        self.width = width

    def __call__(self, event: dict[str, Any]) -> None:
        step, total = event["step"], max(1, event["total"])
        filled = int(self.width * step / total)
        loss = event.get("loss")
        eta = event.get("eta_seconds")
        parts = [f"[{'#' * filled}{'-' * (self.width - filled)}] {step}/{total}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if eta is not None:
            parts.append(f"ETA {eta:.0f} s")
        self.stream.write("\r" + "  ".join(parts))
        if step >= total:
            self.stream.write("\n")
        self.stream.flush()
