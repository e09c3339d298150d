"""64-bit perceptual hash (pHash) of an image, and near-duplicate pairs by Hamming distance in
DuckDB.

The hash is the DCT-II of the 32×32 grey thumbnail (Lanczos), top-left 8×8 coefficients compared
with their median — the algorithm of `imagehash.phash`, computed with numpy (a 32×32 matrix
product; no scipy). Bit 63 is the first coefficient; the value is stored as a signed BIGINT.

Pairs are found without comparing all pairs: two hashes within distance d agree exactly on at
least one of d+1 disjoint bands of their bits (pigeonhole), so an equi-join on (band, band value)
yields every candidate, and ``bit_count(xor(a, b)) <= d`` keeps the true ones.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np

HASH_SIZE, SIDE = 8, 32


@cache
def _dct_matrix(n: int = SIDE) -> np.ndarray:
    """Unnormalised DCT-II basis (scipy.fftpack.dct's default): row k is 2·cos(πk(2i+1)/2n)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def phash(source: bytes | Path) -> int:
    """The signed 64-bit pHash of an image file (bytes or path)."""
    from PIL import Image

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        return image_phash(img)


def image_phash(img) -> int:
    """The signed 64-bit pHash of an opened (or already decoded) Pillow image's current frame."""
    from PIL import Image

    grey = img.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    d = _dct_matrix()
    low = (d @ pixels @ d.T)[:HASH_SIZE, :HASH_SIZE]
    ordered = np.sort(low, axis=None)  # the median of 64 values, without np.median's overhead
    bits = (low > (ordered[31] + ordered[32]) / 2).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big", signed=True)  # first coefficient = bit 63


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of max_distance+1 disjoint bands covering 64 bits."""
    n = max_distance + 1
    widths = [64 // n + (1 if i < 64 % n else 0) for i in range(n)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, w))
        shift += w
    return out


def pairs_sql(max_distance: int, source: str = "hashes") -> str:
    """SQL over `source` (columns id, phash) for pairs (id_a < id_b) within `max_distance` bits."""
    if not 0 <= max_distance < 32:
        raise ValueError(f"max_distance must be 0..31, got {max_distance}")
    bands = " union all ".join(
        f"select id, phash, {i} band, (phash >> {shift}) & {(1 << width) - 1} val from {source}"
        for i, (shift, width) in enumerate(_bands(max_distance)))
    return f"""
        with banded as ({bands})
        select a.id id_a, b.id id_b, min(bit_count(xor(a.phash, b.phash)))::integer distance
        from banded a join banded b on a.band = b.band and a.val = b.val and a.id < b.id
        where bit_count(xor(a.phash, b.phash)) <= {max_distance}
        group by all"""


PHASH_MAX_DISTANCE = 8  # of 64 bits: resized, recompressed or lightly edited copies stay within it
_CURRENT_HASHES = """select v.asset_id id, v.version, v.phash from asset_versions v join assets a
                     on a.id = v.asset_id and a.current_version = v.version
                     where v.phash is not null and a.status = 'active'"""


def hashed_image_ids(tables) -> set[str]:
    """Live assets whose current version has a pHash."""
    from asset_pipeline.sql import connect

    con = connect(tables, ["assets", "asset_versions"])
    try:
        return {r[0] for r in con.execute(f"select id from ({_CURRENT_HASHES})").fetchall()}
    finally:
        con.close()


def phash_pairs(tables, max_distance: int = PHASH_MAX_DISTANCE) -> list[dict]:
    """Near-duplicate pairs among the current versions of live images, by pHash distance."""
    from asset_pipeline.sql import connect

    con = connect(tables, ["assets", "asset_versions"])
    try:
        con.execute(f"create temp table hashes as {_CURRENT_HASHES}")
        rows = con.sql(f"""select p.id_a asset_a, a.version version_a, p.id_b asset_b, b.version version_b,
                                  p.distance from ({pairs_sql(max_distance)}) p
                           join hashes a on a.id = p.id_a join hashes b on b.id = p.id_b
                           order by p.distance, p.id_a, p.id_b""").to_arrow_table().to_pylist()
    finally:
        con.close()
    return rows
