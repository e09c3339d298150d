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
    """Callable(files_done, bytes_done) that redraws at most 10 times a second. Totals may be
    unknown (None): an inbox is streamed, not listed first; `finish()` then ends the line."""

    def __init__(self, total_files: int | None = None, total_bytes: int | None = None, stream: TextIO = sys.stderr,
                 label: str = "ingest"):
        self.total_files, self.total_bytes, self.stream, self.label = total_files, total_bytes, stream, label
        self.start = self._last = time.monotonic()
        self._ended = False

    def __call__(self, files: int, nbytes: int) -> None:
        now = time.monotonic()
        complete = self.total_files is not None and files >= self.total_files
        if now - self._last < 0.1 and not complete:
            return
        self._last = now
        rate = nbytes / max(now - self.start, 1e-6)
        of_files = f"/{self.total_files}" if self.total_files is not None else ""
        of_bytes = f"/{human_bytes(self.total_bytes)}" if self.total_bytes is not None else ""
        self.stream.write(f"\r{self.label}: {files}{of_files} files  {human_bytes(nbytes)}{of_bytes}  "
                          f"{human_bytes(rate)}/s   ")
        if complete:
            self.stream.write("\n")
            self._ended = True
        self.stream.flush()

    def finish(self) -> None:
        if not self._ended and self._last != self.start:
            self.stream.write("\n")
            self.stream.flush()
        self._ended = True
