"""Live aging: a stream of frames (a webcam, a video file) aged to one age as it plays.

A photo spends most of its time on work that belongs to the person, not the frame: encoding and
the identity optimisation (hundreds of ms), the head mask (GrabCut, 30-100 ms), the edit at each
age. In a stream the same person stays in view, so that work is done once, when a face appears,
and kept with its `FaceTrack`. Per frame only this is left:
- the five landmarks are followed: MTCNN every DETECT_EVERY frames, Lucas-Kanade optical flow in
  between, and smoothed over time, so that a still head gets a still alignment (no flicker);
- the head mask made when the face appeared is carried to the frame's alignment (a warp);
- the edit at the asked age (made once per age and kept) is rendered onto the frame.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np

from .ager import MIN_FACE_PIXELS, FaceAger
from .ages import NUM_GROUPS, AgeGroup
from .align import CROP_SIZE, align_face, canonical_landmarks, similarity_transform, to_tensor
from .detect import largest_first
from .faces import PreparedFace
from .region import moved_region
from .render import composite
from .timing import Stopwatch

# Full detection every this many frames; optical flow follows the landmarks in between.
DETECT_EVERY = 5
# Frames are searched for faces at this longest side: a webcam face is large, and MTCNN's pyramid
# on a 640 px frame cost twice as much for nothing it found more.
LIVE_DETECT_SIDE = 320
# A track not found by this many detections in a row is dropped.
MISSES_ALLOWED = 2
# The identity optimisation when a face appears is bounded to this many seconds: the stream waits for it once.
OPTIMISE_SECONDS = 0.6
# The age probe's reading is averaged over this many detections before it settles; the edits are
# remade when the averaged reading changes group.
SOURCE_READINGS = 5
# Landmark smoothing (a one-euro filter, Casiez et al. 2012, on the face's scale): a still head's
# landmarks move by under LANDMARK_STILL of the eye distance per frame and are averaged strongly;
# faster moves are followed at once, so the aged face does not lag behind.
LANDMARK_STILL = 0.02
LANDMARK_MIN_FOLLOW = 0.15
# Forward-backward optical-flow error (pixels) past which a landmark counts as lost.
FLOW_LOST = 2.0


@dataclass
class FaceTrack:
    """One person in the stream: where their face is now, and the face made ready once."""

    landmarks: np.ndarray  # (5, 2) smoothed, in frame pixels
    face: PreparedFace  # crop, latents and head region when the face appeared; its edits per age
    estimated: np.ndarray  # the age probe's mean probabilities over its readings so far
    readings: int = 1
    told: AgeGroup | None = None
    misses: int = 0
    size: float = 0.0  # the detection's, in frame pixels: tracks are kept largest first

    @property
    def source_group(self) -> AgeGroup:
        return self.told if self.told is not None else AgeGroup(int(self.estimated.argmax()))

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


def smooth_landmarks(previous: np.ndarray, new: np.ndarray, eye_distance: float) -> np.ndarray:
    """One step of the landmark filter: how far `new` follows from `previous` grows with the move
    (relative to the face's size), so jitter is averaged away and real motion is not delayed."""
    move = float(np.abs(new - previous).max()) / max(eye_distance, 1.0)
    follow = float(np.clip(move / LANDMARK_STILL, LANDMARK_MIN_FOLLOW, 1.0))
    return previous + follow * (new - previous)


class LiveAger:
    """Ages the frames of one stream to one age at a time. One per stream (it remembers the faces
    it has seen); `frame()` takes the target age position per call, so it can change while the
    stream runs."""

    def __init__(self, ager: FaceAger, max_faces: int = 1, detect_every: int = DETECT_EVERY):
        self.ager = ager
        self.max_faces = max_faces
        self.detect_every = detect_every
        self.tracks: list[FaceTrack] = []
        self.frames = 0
        self.timings: dict[str, list[float]] = defaultdict(list)  # per stage, per frame (seconds)
        self._gray: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None

    def frame(self, frame: np.ndarray, position: float, source_group: AgeGroup | int | str | None = None) -> np.ndarray:
        """`frame` (RGB uint8) with each followed face at age `position` (0 = 0-18 ... 5 = 60+,
        fractions blend); `source_group`: the group the person says they are in (None: estimated)."""
        position = float(np.clip(position, 0, NUM_GROUPS - 1))
        told = AgeGroup.parse(source_group)
        lap = Stopwatch(lambda stage, seconds: self.timings[stage].append(seconds)).lap

        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if self._shape != frame.shape:  # a new frame size: nothing carries over
            self.tracks, self._gray, self._shape = [], None, frame.shape
        following = self._gray is not None and bool(self.tracks)
        if following:
            self._follow(self._gray, gray)
        lap("track" if following else None)
        detecting = self.frames % self.detect_every == 0 or not self.tracks
        if detecting:
            self._detect(frame, told)
        lap("detect" if detecting else None)
        self._gray = gray
        self.frames += 1
        for track in self.tracks:
            track.told = told  # the group the user gives may change while the stream runs
            track.face.start_from(track.source_group)
        out = self._render(frame, position)
        lap("render")
        return out

    def _follow(self, before: np.ndarray, now: np.ndarray) -> None:
        """Landmarks carried from the last frame to this one by pyramidal Lucas-Kanade, checked
        forwards and backwards; a face whose landmarks are lost waits for the next detection."""
        points = np.concatenate([t.landmarks for t in self.tracks]).astype(np.float32).reshape(-1, 1, 2)
        options = {"winSize": (21, 21), "maxLevel": 3}
        forward, found, _ = cv2.calcOpticalFlowPyrLK(before, now, points, None, **options)
        back, found_back, _ = cv2.calcOpticalFlowPyrLK(now, before, forward, None, **options)
        error = np.linalg.norm(back - points, axis=2).ravel()
        ok = (found.ravel() == 1) & (found_back.ravel() == 1) & (error < FLOW_LOST)
        for i, track in enumerate(self.tracks):
            part = slice(5 * i, 5 * i + 5)
            if ok[part].all():
                track.landmarks = smooth_landmarks(
                    track.landmarks, forward[part, 0].astype(np.float64), track.eye_distance
                )

    def _detect(self, frame: np.ndarray, told: AgeGroup | None) -> None:
        """Full detection: faces matched to tracks by distance (landmarks smoothed towards the
        detection), new faces get a track, tracks not found for a while are dropped."""
        scale = min(1.0, LIVE_DETECT_SIDE / max(frame.shape[:2]))
        small = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = [f for f in self.ager.detector.detect(small) if f.size / scale >= MIN_FACE_PIXELS]
        found = found[: self.max_faces]
        unmatched = list(range(len(found)))
        for track in self.tracks:
            near = [i for i in unmatched if _distance(found[i].landmarks / scale, track.landmarks) < track.eye_distance]
            if not near:
                track.misses += 1
                continue
            best = min(near, key=lambda i: _distance(found[i].landmarks / scale, track.landmarks))
            unmatched.remove(best)
            track.misses, track.size = 0, found[best].size / scale
            track.landmarks = smooth_landmarks(track.landmarks, found[best].landmarks / scale, track.eye_distance)
            if track.readings < SOURCE_READINGS:
                self._read_age(frame, track)
        self.tracks = [t for t in self.tracks if t.misses <= MISSES_ALLOWED]
        room = self.max_faces - len(self.tracks)
        new = [self._start_track(frame, found[i].landmarks / scale, told) for i in unmatched[: max(room, 0)]]
        for track, i in zip(new, unmatched, strict=False):
            track.size = found[i].size / scale
        self.tracks = largest_first(self.tracks + new)

    def _start_track(self, frame: np.ndarray, landmarks: np.ndarray, told: AgeGroup | None) -> FaceTrack:
        """A face that just appeared: its crop, latent and head mask, made once."""
        seconds = min(self.ager.max_seconds, OPTIMISE_SECONDS)
        face = self.ager.prepare(frame, [landmarks], told, max_seconds=seconds)[0]
        return FaceTrack(landmarks, face, face.probabilities, told=told)

    def _read_age(self, frame: np.ndarray, track: FaceTrack) -> None:
        """One more reading of the face's own group, averaged in; edits remade if it changes group."""
        x = to_tensor(align_face(frame, track.landmarks, CROP_SIZE)[0][None], self.ager.device)
        reading = self.ager.age_probabilities(x)[0].cpu().numpy()
        track.estimated = (track.estimated * track.readings + reading) / (track.readings + 1)
        track.readings += 1
        track.face.start_from(track.source_group)

    def _render(self, frame: np.ndarray, position: float) -> np.ndarray:
        rendered = []
        for track in self.tracks:
            if track.face.region is None:
                continue
            matrix = similarity_transform(track.landmarks, canonical_landmarks(CROP_SIZE))
            region = moved_region(track.face.region, frame.shape, matrix, CROP_SIZE)
            if region is not None:
                rendered.append((region, track.face.render_at(frame, position, region)))
        return composite(frame, rendered)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.mean(0) - b.mean(0)))
