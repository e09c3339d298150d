"""File names as text. Linux names are bytes; Python hands a name's bytes that are not UTF-8
over as surrogates, which no table, SQL statement or log line can hold. `shown` escapes them,
and `fit_name` keeps a name that escaping (or a mark added to it) made too long within what one
file name may take."""

from __future__ import annotations

import hashlib

NAME_MAX = 255  # bytes in one file name (ext4, XFS, Btrfs)


def shown(name: str) -> str:
    """`name` as text: bytes that are not UTF-8 escaped as ``\\xNN`` (any other lone surrogate as
    ``\\udcNN``); a UTF-8 name is itself."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file system name produced
        return name.encode("utf-8", "backslashreplace").decode()


def fit_name(name: str, room: int = NAME_MAX) -> str:
    """`name` if it takes at most `room` bytes; else its stem cut short and marked with a digest
    of the whole name (a shown name grows four times per escaped byte: it must still fit a
    folder), its suffix kept."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= room:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > 16:
        stem, dot, suffix = name, "", ""
    mark = "~" + hashlib.sha256(raw).hexdigest()[:16]
    budget = room - len(mark.encode()) - len((dot + suffix).encode("utf-8", "surrogateescape"))
    cut = stem.encode("utf-8", "surrogateescape")[:budget].decode("utf-8", "ignore")
    return f"{cut}{mark}{dot}{suffix}"
