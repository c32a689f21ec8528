"""Age a video file: every frame through the live path (`LiveAger`), sound kept as it was.

PyAV (FFmpeg's libraries, bundled in its wheel) reads and writes the file: the output has the
input's frame count, frame rate and size, H.264 video, and the input's audio copied untouched
(or re-encoded to AAC when MP4 cannot hold its codec).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .ager import FaceAger
from .ages import AgeGroup
from .images import FaceAgingError
from .live import LiveAger

MAX_VIDEO_SECONDS = 60
MAX_VIDEO_BYTES = 200 * 1024 * 1024
MAX_VIDEO_SIDE = 1920
VIDEO_FACES = 4  # faces followed per video (largest first)
# Audio codecs an MP4 holds as they are; anything else is re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "alac", "opus", "flac", "ac3"}
DEFAULT_RATE = Fraction(25)


@dataclass
class VideoReport:
    frames: int
    rate: Fraction
    seconds: float  # the video's length
    has_audio: bool
    size: tuple[int, int]  # width, height


def _unreadable(path: Path) -> FaceAgingError:
    return FaceAgingError(f"{path.name} could not be read as a video. Please upload an MP4, WebM or MOV file.")


def check_video(path: str | Path) -> VideoReport:
    """What the video holds, or a FaceAgingError saying why it cannot be aged (unreadable, no
    video track, too long, too large)."""
    path = Path(path)
    if not path.is_file():
        raise FaceAgingError(f"No video at {path}.")
    if path.stat().st_size > MAX_VIDEO_BYTES:
        raise FaceAgingError(f"This video is over {MAX_VIDEO_BYTES // 2**20} MB; please trim it or send a smaller one.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FaceAgingError(f"{path.name} has no video track.")
            stream = container.streams.video[0]
            rate = Fraction(stream.average_rate or stream.guessed_rate or DEFAULT_RATE)
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / av.time_base
            else:
                seconds = (stream.frames or 0) / rate
            size = (stream.codec_context.width, stream.codec_context.height)
            has_audio = bool(container.streams.audio)
            frames = stream.frames or round(seconds * rate)
    except FaceAgingError:
        raise
    except (av.FFmpegError, ValueError, ZeroDivisionError):
        raise _unreadable(path) from None
    if not size[0] or not size[1]:
        raise _unreadable(path)
    if seconds > MAX_VIDEO_SECONDS:
        raise FaceAgingError(f"This video lasts {seconds:.0f} s; at most {MAX_VIDEO_SECONDS} s can be aged.")
    if max(size) > MAX_VIDEO_SIDE:
        raise FaceAgingError(f"This video is {size[0]}x{size[1]}; at most {MAX_VIDEO_SIDE} px on the longer side.")
    return VideoReport(frames, rate, seconds, has_audio, size)


def age_video(
    ager: FaceAger,
    source: str | Path,
    out: str | Path,
    position: float,
    source_group: AgeGroup | int | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VideoReport:
    """Write `source` aged to `position` (0 = 0-18 ... 5 = 60+) as an MP4 at `out`; returns what
    was written. `progress(done, total)` is called after each frame."""
    report = check_video(source)
    live = LiveAger(ager, max_faces=VIDEO_FACES)
    written = 0
    try:
        with av.open(str(source)) as given, av.open(str(out), "w", format="mp4") as output:
            video_in = given.streams.video[0]
            audio_in = given.streams.audio[0] if given.streams.audio else None
            video_out = output.add_stream("libx264", rate=report.rate)
            video_out.width, video_out.height = report.size[0] // 2 * 2, report.size[1] // 2 * 2
            video_out.pix_fmt = "yuv420p"
            video_out.options = {"crf": "20", "preset": "veryfast"}
            audio_out, resample = _audio_output(output, audio_in)
            streams = [video_in] if audio_in is None else [video_in, audio_in]
            for packet in given.demux(*streams):
                if packet.stream is video_in:
                    for frame in packet.decode():
                        aged = live.frame(frame.to_ndarray(format="rgb24"), position, source_group)
                        aged = np.ascontiguousarray(aged[: video_out.height, : video_out.width])
                        picture = av.VideoFrame.from_ndarray(aged, format="rgb24")
                        picture.pts = written
                        picture.time_base = 1 / report.rate
                        output.mux(video_out.encode(picture))
                        written += 1
                        if progress is not None:
                            progress(written, max(report.frames, written))
                elif resample:
                    for frame in packet.decode():
                        output.mux(audio_out.encode(frame))
                elif packet.dts is not None:  # copied as it is; FFmpeg's flush packets carry no dts
                    packet.stream = audio_out
                    output.mux(packet)
            output.mux(video_out.encode())
            if resample:
                output.mux(audio_out.encode())
    except FaceAgingError:
        raise
    except av.FFmpegError as err:
        Path(out).unlink(missing_ok=True)
        if written == 0:
            raise _unreadable(Path(source)) from None
        raise FaceAgingError(f"The video broke off after {written} frames ({err.strerror or err}).") from None
    return VideoReport(written, report.rate, written / report.rate, report.has_audio, report.size)


def _audio_output(output: av.container.OutputContainer, audio_in: av.audio.AudioStream | None):
    """The output's audio stream, and whether the audio has to be decoded and re-encoded."""
    if audio_in is None:
        return None, False
    if audio_in.codec_context.name in MP4_AUDIO:
        return output.add_stream_from_template(audio_in), False
    return output.add_stream("aac", rate=audio_in.codec_context.sample_rate or 48000), True
