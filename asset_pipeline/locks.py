"""Exclusive locks between processes on one machine, released by the kernel when a holder dies.

They serialise the few things that must not overlap whoever starts them (a Dagster run, the CLI,
a notebook): creating a Dagster instance's storage, one retention sweep at a time, one report
build at a time. A `kill -9` releases the lock, so a crashed holder never blocks the next run.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from asset_pipeline.errors import LockTimeout


@contextmanager
def file_lock(path: Path, timeout_s: float = 600.0, what: str | None = None) -> Iterator[None]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{what or path.name}: another process has held {path} for over "
                                      f"{timeout_s:.0f}s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
