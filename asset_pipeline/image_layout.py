"""Where an image's data ends, read from its container structure.

Pillow decodes pixels but says neither where an image ends (so bytes appended after it — a ZIP
behind a PNG — go unseen) nor whether a PNG's compressed data holds every row its header declares
(a stream that stops early decodes as black rows). These walks answer both from the structure
alone: they read the file sequentially through a file object (no mmap: a file truncated while
mapped kills the process with SIGBUS) and hold at most one chunk of it in memory.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

from asset_pipeline.errors import InputRejected

_BLOCK = 1024 * 1024
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _truncated(fmt: str, what: str) -> InputRejected:
    return InputRejected(f"{fmt} image is truncated: {what}", "content")


def _corrupt(fmt: str, what: str) -> InputRejected:
    return InputRejected(f"{fmt} image is corrupt: {what}", "content")


def _read(f: BinaryIO, n: int, fmt: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise _truncated(fmt, f"the file ends inside {what}")
    return data


def png_raw_size(width: int, height: int, depth: int, colour: int, interlaced: bool) -> int:
    """Bytes a PNG's image data inflates to: one filter byte plus the packed samples per row
    (per row of each Adam7 pass when interlaced)."""
    bits = depth * _PNG_CHANNELS[colour]
    if not interlaced:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def png_end(f: BinaryIO) -> int:
    """Offset just past IEND. Checks every chunk's CRC and that the IDAT stream inflates to exactly
    the size the header declares (inflating stops one byte past it, so a bomb costs no more)."""
    fmt = "png"
    pos = 8
    f.seek(pos)
    expected: int | None = None
    inflater = zlib.decompressobj()
    inflated = 0
    while True:
        length, kind = struct.unpack(">I4s", _read(f, 8, fmt, "a chunk header (no IEND chunk)"))
        if length > 0x7FFFFFFF:
            raise _corrupt(fmt, f"chunk {kind!r} at offset {pos} declares {length} bytes")
        crc = zlib.crc32(kind)
        left = length
        while left:
            piece = _read(f, min(left, _BLOCK), fmt, f"chunk {kind.decode('latin-1')!r}")
            left -= len(piece)
            crc = zlib.crc32(piece, crc)
            if kind == b"IHDR" and expected is None and len(piece) >= 13:
                width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", piece[:13])
                if colour not in _PNG_CHANNELS:
                    raise _corrupt(fmt, f"unknown colour type {colour}")
                expected = png_raw_size(width, height, depth, colour, interlace == 1)
            elif kind == b"IDAT" and expected is not None:
                if inflater.eof:
                    raise _corrupt(fmt, "image data continues after its compressed stream ended")
                try:
                    out = inflater.decompress(piece, expected + 1 - inflated)
                    inflated += len(out)
                    while inflater.unconsumed_tail and inflated <= expected:
                        out = inflater.decompress(inflater.unconsumed_tail, expected + 1 - inflated)
                        inflated += len(out)
                except zlib.error as exc:
                    raise _corrupt(fmt, f"compressed image data: {exc}") from exc
                if inflated > expected:
                    raise _corrupt(fmt, f"the pixel data inflates to more than the {expected} bytes its header "
                                        "declares")
        if struct.unpack(">I", _read(f, 4, fmt, "a chunk CRC"))[0] != crc:
            raise _corrupt(fmt, f"CRC mismatch in chunk {kind.decode('latin-1')!r} at offset {pos}")
        pos += 12 + length
        if kind == b"IEND":
            break
    if expected is None:
        raise _corrupt(fmt, "no IHDR chunk")
    if inflater.unused_data:
        raise _corrupt(fmt, "image data continues after its compressed stream ended")
    if not inflater.eof or inflated != expected:
        raise _truncated(fmt, f"the pixel data holds {inflated} of the {expected} bytes its header declares")
    return pos


def _skip_entropy_data(f: BinaryIO, pos: int) -> int:
    """Offset of the first marker after entropy-coded data starting at `pos` (0xFF00 is a stuffed
    byte and 0xFFD0-D7 a restart marker, both part of the data)."""
    while True:
        f.seek(pos)
        block = f.read(_BLOCK)
        if len(block) < 2:
            raise _truncated("jpeg", "no end-of-image marker")
        i = block.find(b"\xff")
        while 0 <= i < len(block) - 1:
            following = block[i + 1]
            if following != 0 and not 0xD0 <= following <= 0xD7:
                return pos + i
            i = block.find(b"\xff", i + 2)
        pos += i if i >= 0 else len(block)  # resume at an undecided 0xFF at the block's end


def jpeg_end(f: BinaryIO) -> int:
    """Offset just past the EOI marker, found by walking the segments (an EXIF thumbnail's own
    EOI lies inside its segment and is skipped with it)."""
    fmt = "jpeg"
    pos = 2
    while True:
        f.seek(pos)
        head = f.read(2)
        if len(head) < 2:
            raise _truncated(fmt, "no end-of-image marker")
        if head[0] != 0xFF:
            raise _corrupt(fmt, f"expected a marker at offset {pos}, found 0x{head[0]:02x}")
        marker = head[1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        pos += 2
        if marker == 0xD9:
            return pos
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        (length,) = struct.unpack(">H", _read(f, 2, fmt, "a segment length"))
        if length < 2:
            raise _corrupt(fmt, f"segment 0x{marker:02x} at offset {pos - 2} has length {length}")
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            pos = _skip_entropy_data(f, pos)


def _skip_sub_blocks(f: BinaryIO) -> None:
    while True:
        (size,) = _read(f, 1, "gif", "a data sub-block")
        if size == 0:
            return
        _read(f, size, "gif", "a data sub-block")


def gif_end(f: BinaryIO) -> int:
    """Offset just past the trailer byte (0x3B), walking extension and image blocks."""
    fmt = "gif"
    f.seek(10)
    (flags,) = _read(f, 1, fmt, "the screen descriptor")
    f.seek(13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0))
    while True:
        (kind,) = _read(f, 1, fmt, "the block list (no trailer)")
        if kind == 0x3B:
            return f.tell()
        if kind == 0x21:  # extension: label, then sub-blocks
            _read(f, 1, fmt, "an extension label")
            _skip_sub_blocks(f)
        elif kind == 0x2C:  # image descriptor, optional local colour table, LZW code size, sub-blocks
            descriptor = _read(f, 9, fmt, "an image descriptor")
            if descriptor[8] & 0x80:
                _read(f, 3 * 2 ** ((descriptor[8] & 7) + 1), fmt, "a local colour table")
            _read(f, 1, fmt, "an image's code size")
            _skip_sub_blocks(f)
        else:
            raise _corrupt(fmt, f"unknown block 0x{kind:02x} at offset {f.tell() - 1}")


def webp_end(f: BinaryIO) -> int:
    """8 + the RIFF size (padded to even), which must lie within the file."""
    f.seek(4)
    (size,) = struct.unpack("<I", _read(f, 4, "webp", "the RIFF header"))
    end = 8 + size + (size & 1)
    f.seek(0, 2)
    if f.tell() < end:
        raise _truncated("webp", f"its RIFF header declares {end} bytes, the file has {f.tell()}")
    return end


ENDS = {"png": png_end, "jpeg": jpeg_end, "gif": gif_end, "webp": webp_end}
