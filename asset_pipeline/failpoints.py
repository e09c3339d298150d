"""Named points where tests crash or pause a process, to force the interleavings they fear.

- ``ASSET_PIPELINE_CRASH_AT=<name>``: the process dies (``os._exit``, no cleanup, like a SIGKILL)
  the first time it reaches that point.
- ``ASSET_PIPELINE_PAUSE_AT=<name>[,<name>…]`` with ``ASSET_PIPELINE_BARRIER=<dir>``: the first
  time a thread reaches a named point it records its arrival as ``<dir>/<name>.<pid>.<thread>``
  and waits — until ``ASSET_PIPELINE_BARRIER_PARTIES`` arrivals are there (two writers that both
  planned their commit, released together), or until a test creates ``<dir>/<name>.go``
  (one process held at a point while another runs to the end).

Production runs set none of these; the check is one environment lookup. The arrival files are the
only state, so a point pauses a thread once even when it is reached again in a retry loop.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

CRASH_EXIT_CODE = 137
PAUSE_TIMEOUT_S = 300.0  # long enough for a full report build on a busy 2-core machine


class FailpointTimeout(RuntimeError):
    """A paused thread waited longer than PAUSE_TIMEOUT_S for its barrier (a broken test)."""


def failpoint(name: str) -> None:
    if os.environ.get("ASSET_PIPELINE_CRASH_AT") == name:
        os._exit(CRASH_EXIT_CODE)
    paused = os.environ.get("ASSET_PIPELINE_PAUSE_AT")
    if paused and name in paused.split(","):
        _pause(name, Path(os.environ["ASSET_PIPELINE_BARRIER"]),
               int(os.environ.get("ASSET_PIPELINE_BARRIER_PARTIES", "0")))


def _pause(name: str, folder: Path, parties: int) -> None:
    arrival = folder / f"{name}.{os.getpid()}.{threading.get_ident()}"
    if arrival.exists():
        return  # this thread already paused here once
    folder.mkdir(parents=True, exist_ok=True)
    arrival.touch()
    go = folder / f"{name}.go"
    deadline = time.monotonic() + PAUSE_TIMEOUT_S
    while time.monotonic() < deadline:
        if go.exists() or (parties and len(list(folder.glob(f"{name}.*.*"))) >= parties):
            return
        time.sleep(0.01)
    raise FailpointTimeout(f"failpoint {name!r}: nobody released {folder} within {PAUSE_TIMEOUT_S:.0f}s")


def arrivals(folder: Path, name: str) -> int:
    """How many threads have reached `name` (tests wait on this before they release a gate)."""
    return len(list(Path(folder).glob(f"{name}.*.*")))
