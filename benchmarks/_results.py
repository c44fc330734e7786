"""Shared by the benchmarks: describe the machine and append a results table to benchmarks/RESULTS.md.

Every table is written with the date, the machine (CPU model, cores, torch version,
device) and the exact command that produced it, so each number can be re-measured.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(device: torch.device) -> str:
    """One line: CPU model, logical cores, torch threads, torch version and the device used."""
    dev = "cpu" if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
    return (
        f"{cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {dev}"
    )


def command_line() -> str:
    """The exact command this process was started with, shell-quoted."""
    return shlex.join(sys.orig_argv)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def append_results(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    device: torch.device,
    notes: Sequence[str] = (),
    path: Path = RESULTS,
) -> str:
    """Append a section (title, date, machine, command, table, notes) to ``path``; returns the section."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"## {title}",
        "",
        f"- date: {now}",
        f"- machine: {machine_line(device)}",
        f"- command: `{command_line()}`",
        "",
        markdown_table(headers, rows),
    ]
    if notes:
        parts += ["", *[f"- {n}" for n in notes]]
    section = "\n".join(parts) + "\n"
    if not path.exists():
        path.write_text("# Benchmark results\n\nAppended by the commands in `benchmarks/`; newest last.\n")
    with path.open("a") as fh:
        fh.write("\n" + section)
    return section
