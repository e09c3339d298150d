"""Audio and video: what a container's header declares, checked against its stream data.

A truncated mp4 whose index (moov) survived still opens with its full duration; so does one whose
index lies at the front. Demuxing every packet (reading, not decoding) shows what the data holds:
each declared stream must have packets, and they must reach (nearly) the duration and frame count
the header declares. The first video frame is decoded to prove the codec data is sound.
"""

from __future__ import annotations

from typing import Any

from asset_pipeline.errors import InputRejected
from asset_pipeline.formats import FormatInfo, ValidationLimits
from asset_pipeline.images import check_pixels

# Containers round durations and pad the last packet; a truncated file misses far more than this.
_SLACK_S, _SLACK_SHARE = 0.5, 0.02
# FFmpeg estimates an mp3's duration from its bitrate when no Xing/Info tag declares one.
_ESTIMATED_DURATION = {"mp3"}


def _declared_seconds(stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def check_streams(container: Any, type_: str, fmt: str, limits: ValidationLimits) -> FormatInfo:
    streams = [s for s in container.streams if s.type in ("video", "audio")]
    if not streams:
        raise InputRejected(f"{fmt} file holds no audio or video stream", "content")
    video = container.streams.video[0] if container.streams.video else None
    width = height = None
    if video is not None:
        width, height = video.width or None, video.height or None
        if width and height:
            check_pixels(fmt, width, height, limits, "video")
    elif type_ == "video":
        type_ = "audio"
    packets = {s.index: 0 for s in streams}
    ends = {s.index: 0.0 for s in streams}
    first = None
    for packet in container.demux(*streams):
        if packet.size == 0:  # a demuxer's end-of-stream marker
            continue
        index = packet.stream.index
        packets[index] += 1
        if packet.pts is not None and packet.time_base:
            ends[index] = max(ends[index], float((packet.pts + (packet.duration or 0)) * packet.time_base))
        if video is not None and first is None and index == video.index:
            frames = packet.decode()
            first = frames[0] if frames else None
    if video is not None and first is None and packets[video.index]:
        frames = video.codec_context.decode(None)  # flush: a decoder may hold back its first frame
        first = frames[0] if frames else None
    for s in streams:
        if not packets[s.index]:
            raise InputRejected(f"{fmt} header declares a {s.type} stream (#{s.index}) but the data holds none of "
                                "it (truncated)", "content")
        if s.type == "video" and s.frames and packets[s.index] < s.frames:
            raise InputRejected(f"{fmt} header declares {s.frames} video frames; the data holds "
                                f"{packets[s.index]} (truncated)", "content")
        declared = _declared_seconds(s)
        if declared and fmt not in _ESTIMATED_DURATION and \
                ends[s.index] < declared - max(_SLACK_S, _SLACK_SHARE * declared):
            raise InputRejected(f"{fmt} header declares {declared:.2f} s of {s.type}; the data holds "
                                f"{ends[s.index]:.2f} s (truncated)", "content")
    if video is not None:
        if first is None:
            raise InputRejected(f"{fmt} video stream does not decode to a single frame", "content")
        if width and height and (first.width, first.height) != (width, height):
            raise InputRejected(f"{fmt} header declares {width}x{height} video; its first frame is "
                                f"{first.width}x{first.height}", "content")
    duration = container.duration / 1_000_000 if container.duration else None
    return FormatInfo(type_, fmt, width, height, duration)
