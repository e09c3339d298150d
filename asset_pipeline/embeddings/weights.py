"""Can a model's pretrained weights be had without waiting? Checked before open_clip tries.

Without network access, huggingface_hub retries a download for about a minute before it gives up;
a search or an embedding run would hang that long and then fail anyway. So before open_clip's
own loader runs, weights named by a pretrained tag are looked up in the local caches (the Hugging
Face cache, or ``~/.cache/clip`` for URL weights), and when they are not there the download host
(or the configured proxy) must accept a TCP connection within a few seconds. Otherwise loading
fails at once, with the fix in one line. Loading itself stays open_clip's.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0


def _hub_files(hub: str) -> tuple[str, list[str]]:
    """(repo id, candidate filenames) in open_clip's order: safetensors first."""
    from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives  # imported by weights_source

    model_id, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    return model_id, [*_get_safe_alternatives(filename), filename]


def weights_source(architecture: str, tag: str) -> tuple[bool, str | None]:
    """(cached, download URL) for an open_clip pretrained tag; URL None when there is no such tag
    (open_clip then reports the unknown tag itself)."""
    from huggingface_hub import constants, try_to_load_from_cache

    from asset_pipeline.embeddings.model import import_open_clip

    import_open_clip()
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(architecture, tag)
    if not cfg:
        return False, None
    if "file" in cfg:
        return Path(cfg["file"]).is_file(), None
    if cfg.get("hf_hub"):
        model_id, names = _hub_files(cfg["hf_hub"])
        cached = any(isinstance(try_to_load_from_cache(model_id, name), str) for name in names)
        return cached, f"{constants.ENDPOINT}/{model_id}"
    url = cfg.get("url", "")
    return (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file(), url or None


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connection to the URL's host (or the HTTPS proxy that would carry it) succeeds."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    proxy = urllib.request.getproxies().get(urlsplit(url).scheme or "https")
    target = urlsplit(proxy if proxy else url)
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable_reason(architecture: str, tag: str) -> str | None:
    """Why the weights cannot be had now (None: cached, or worth trying to download)."""
    cached, url = weights_source(architecture, tag)
    if cached or url is None:
        return None
    host = urlsplit(url).hostname
    if not reachable(url):
        return f"its weights are not in the local cache and {host} cannot be reached"
    return None
