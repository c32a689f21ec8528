"""`python -m faceaging bench --live`: the live path on a 640x480 clip made from an example photo.

The clip is a webcam's view of the photo: a still one (the camera's sensor noise is all that
changes between frames) and a moving one (the face drifts, bobs and comes closer). Reported: each
stage's per-frame median, the streaming handler's frames per second and median latency, and
flicker: how much the aged face changes from frame to frame against how much the input does
(1.0 = no more than the camera; the bar is 1.2). Also the dlib identity distance and the age
judge's reading on sampled frames at 0-18 and 60+.
"""

from __future__ import annotations

import statistics
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..ager import FaceAger
from ..images import load_image
from ..live import LiveAger

CLIP_SIZE = (640, 480)
CLIP_FACE = 170  # the face's width in the clip, pixels: a webcam at arm's length
SENSOR_NOISE = 2.0  # grey levels, a webcam's noise in good light
CLIP_PHOTO = "luciano_codait_cc0.png"


def make_clip(photo: np.ndarray, box: np.ndarray, frames: int, moving: bool, seed: int = 0) -> list[np.ndarray]:
    """`frames` 640x480 RGB frames looking at the face in `box` of `photo`, with sensor noise;
    `moving`: the face drifts sideways, bobs and comes closer, as a person in front of a webcam."""
    rng = np.random.default_rng(seed)
    centre = (box[:2] + box[2:]) / 2
    base = CLIP_FACE / (box[2] - box[0])
    width, height = CLIP_SIZE
    clip = []
    for t in range(frames):
        zoom, dx, dy = (1 + 0.15 * np.sin(t / 31), 50 * np.sin(t / 17), 20 * np.sin(t / 11)) if moving else (1, 0, 0)
        scale = base * zoom
        matrix = np.array(
            [[scale, 0, width / 2 + dx - scale * centre[0]], [0, scale, height / 2 + dy - scale * centre[1]]]
        )
        frame = cv2.warpAffine(photo, matrix, CLIP_SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        clip.append(np.clip(frame + rng.normal(0, SENSOR_NOISE, frame.shape), 0, 255).astype(np.uint8))
    return clip


def example_clip(examples: Path, frames: int, moving: bool, ager: FaceAger) -> list[np.ndarray]:
    photo = load_image(examples / CLIP_PHOTO)
    return make_clip(photo, ager.detector.detect(photo)[0].box, frames, moving)


def write_y4m(frames: list[np.ndarray], path: Path, rate: int = 15) -> Path:
    """The frames as a YUV4MPEG2 file: what Chromium plays as a fake webcam."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{rate}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def write_mp4(frames: list[np.ndarray], path: Path, rate: int = 25, audio: bool = True) -> Path:
    """The frames as an H.264 MP4, with a second of 440 Hz AAC tone per second of video when `audio`."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=44100) if audio else None
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = i, Fraction(1, rate)
            out.mux(video.encode(picture))
        out.mux(video.encode())
        if sound is not None:
            samples = round(44100 * len(frames) / rate)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 44100, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return path


def flicker(inputs: list[np.ndarray], outputs: list[np.ndarray], box: tuple[int, int, int, int]) -> float:
    """Mean frame-to-frame change of the output inside `box` over the input's there: 1.0 = the
    aged face changes no more than the camera's picture does."""
    x0, y0, x1, y1 = box

    def change(frames: list[np.ndarray]) -> float:
        return float(
            np.mean(
                [
                    np.abs(b[y0:y1, x0:x1].astype(np.float32) - a[y0:y1, x0:x1]).mean()
                    for a, b in zip(frames, frames[1:], strict=False)
                ]
            )
        )

    return change(outputs) / max(change(inputs), 1e-6)


def clip_face_box() -> tuple[int, int, int, int]:
    """The still clip's face box: where make_clip puts the face (centred, CLIP_FACE wide)."""
    width, height = CLIP_SIZE
    half = CLIP_FACE // 2
    return width // 2 - half, height // 2 - round(1.2 * half), width // 2 + half, height // 2 + round(1.2 * half)


def run_clip(live: LiveAger, clip: list[np.ndarray], position: float) -> tuple[list[np.ndarray], list[float]]:
    """Each frame through the live path; the aged frames and each frame's seconds."""
    outputs, seconds = [], []
    for frame in clip:
        started = time.perf_counter()
        outputs.append(live.frame(frame, position))
        seconds.append(time.perf_counter() - started)
    return outputs, seconds


def bench_live(examples: Path, frames: int = 150, ager: FaceAger | None = None) -> dict:
    """Figures for the live path; the first frame of each clip (a face appearing: its latent and
    mask are made) is reported apart from the steady state."""
    from .age_judge import AgeEstimator  # dlib and the age judge: evaluation dependencies only
    from .photos import DlibIdentity, _nearest_face

    ager = ager or FaceAger.from_pretrained()
    report: dict = {}
    identity, judge = DlibIdentity(), AgeEstimator()
    for name, moving in (("still", False), ("moving", True)):
        clip = example_clip(examples, frames, moving, ager)
        live = LiveAger(ager)
        outputs, seconds = run_clip(live, clip, 5.0)
        steady = seconds[1:]
        figures = {
            "frames": len(clip),
            "first_frame_ms": round(1000 * seconds[0], 1),
            "median_latency_ms": round(1000 * statistics.median(steady), 1),
            "p90_latency_ms": round(1000 * float(np.percentile(steady, 90)), 1),
            "fps": round(len(steady) / sum(steady), 1),
            # per frame where the stage ran (detection: every DETECT_EVERY frames)
            "stages_ms": {k: round(1000 * statistics.median(v[1:] or v), 1) for k, v in live.timings.items()},
            "flicker": round(flicker(clip, outputs, clip_face_box()), 3),
        }
        sampled = {}
        for position in (0.0, 5.0):
            live = LiveAger(ager)
            aged, _ = run_clip(live, clip[:40], position)
            distances, ages = [], []
            for i in (10, 25, 39):
                box = ager.detector.detect(clip[i])[0].box
                wanted, got = identity.descriptor(clip[i], box), identity.descriptor(aged[i], box)
                if wanted is not None and got is not None:
                    distances.append(float(np.linalg.norm(wanted - got)))
                if (found := _nearest_face(ager, aged[i], box)) is not None:
                    ages.append(judge.estimate(aged[i], found.landmarks).years)
            sampled[f"{position:g}"] = {
                "dlib_distance_max": round(max(distances), 3) if distances else None,
                "judge_age_mean": round(statistics.fmean(ages), 1) if ages else None,
            }
        figures["sampled"] = sampled
        report[name] = figures
    report["video"] = bench_video(examples, ager)
    return report


def bench_video(examples: Path, ager: FaceAger, seconds: int = 5, rate: int = 25) -> dict:
    """A `seconds` long 640x480 MP4 of the moving clip, with sound, aged to 60+ by `age_video`."""
    import tempfile

    from ..video import age_video

    with tempfile.TemporaryDirectory() as folder:
        source = write_mp4(example_clip(examples, seconds * rate, True, ager), Path(folder) / "clip.mp4", rate)
        started = time.perf_counter()
        written = age_video(ager, source, Path(folder) / "aged.mp4", 5.0)
        took = time.perf_counter() - started
    return {"frames": written.frames, "seconds": round(took, 2), "fps": round(written.frames / took, 1)}


def markdown_table(report: dict) -> str:
    header = (
        "| clip | fps | median latency (ms) | p90 (ms) | first frame (ms) | track / detect / render (ms) "
        "| flicker | dlib distance at 0-18 / 60+ | judge age at 0-18 / 60+ |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for name, f in report.items():
        if name == "video":
            continue
        stages = " / ".join(str(f["stages_ms"].get(s, "-")) for s in ("track", "detect", "render"))
        young, old = f["sampled"]["0"], f["sampled"]["5"]
        cells = [
            name,
            f["fps"],
            f["median_latency_ms"],
            f["p90_latency_ms"],
            f["first_frame_ms"],
            stages,
            f["flicker"],
            f"{young['dlib_distance_max']} / {old['dlib_distance_max']}",
            f"{young['judge_age_mean']} / {old['judge_age_mean']}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    if video := report.get("video"):
        lines.append(
            f"\nVideo: {video['frames']} frames (640x480, 5 s) aged in {video['seconds']} s: {video['fps']} fps."
        )
    return "\n".join(lines)
