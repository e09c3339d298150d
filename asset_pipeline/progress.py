"""A one-line progress report (files, bytes, rate) for long runs on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class ProgressLine:
    """Callable(files_done, bytes_done) that redraws at most 10 times a second."""

    def __init__(self, total_files: int, total_bytes: int, stream: TextIO = sys.stderr, label: str = "ingest"):
        self.total_files, self.total_bytes, self.stream, self.label = total_files, total_bytes, stream, label
        self.start = self._last = time.monotonic()

    def __call__(self, files: int, nbytes: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and files < self.total_files:
            return
        self._last = now
        rate = nbytes / max(now - self.start, 1e-6)
        self.stream.write(f"\r{self.label}: {files}/{self.total_files} files  "
                          f"{human_bytes(nbytes)}/{human_bytes(self.total_bytes)}  {human_bytes(rate)}/s   ")
        if files >= self.total_files:
            self.stream.write("\n")
        self.stream.flush()
