"""Asset identity: (project, name) → a stable id, so re-ingesting an output finds its asset."""

import hashlib


def asset_id_for(project: str, name: str) -> str:
    return "a_" + hashlib.sha256(f"{project}\x00{name}".encode()).hexdigest()[:24]


def default_name(rel: str) -> str:
    """The inbox path without its extension (``renders/cat.png`` → ``renders/cat``)."""
    stem, dot, ext = rel.rpartition(".")
    return stem if dot and "/" not in ext else rel
