"""The live path (a stream of frames at one age) and video files, on clips made from an example photo."""

import json

import av
import numpy as np
import pytest
from conftest import EXAMPLES, faceaging_cli, rgb

from faceaging import AgeGroup
from faceaging.align import CROP_SIZE, align_face
from faceaging.evaluation.live import clip_face_box, flicker, make_clip, write_mp4
from faceaging.images import FaceAgingError
from faceaging.live import DETECT_EVERY, LiveAger
from faceaging.region import head_region, moved_region
from faceaging.video import age_video

SELFIE = EXAMPLES / "luciano_codait_cc0.png"


@pytest.fixture(scope="module")
def selfie_box(detector):
    return detector.detect(rgb(SELFIE))[0].box


@pytest.fixture(scope="module")
def still_clip(selfie_box):
    return make_clip(rgb(SELFIE), selfie_box, 3 * DETECT_EVERY + 1, moving=False)


@pytest.fixture(scope="module")
def moving_clip(selfie_box):
    return make_clip(rgb(SELFIE), selfie_box, 25, moving=True)


def _run(live: LiveAger, clip: list[np.ndarray], position: float, **options) -> list[np.ndarray]:
    return [live.frame(frame, position, **options) for frame in clip]


def test_a_carried_head_mask_moves_with_the_face(detector):
    """The mask made on one frame, carried to a frame where the face moved 23 px right and 11 px
    down, is the same mask 23 px right and 11 px down (not found again by GrabCut)."""
    photo = rgb(SELFIE)
    landmarks = detector.detect(photo)[0].landmarks
    _, matrix = align_face(photo, landmarks)
    region = head_region(photo, matrix, CROP_SIZE)
    moved = moved_region(region, photo.shape, align_face(photo, landmarks + (23, 11))[1], CROP_SIZE)
    assert moved.box[0] == region.box[0] + 23 or moved.box[0] == photo.shape[1]  # clipped at the edge
    for before, after in ((region.reach, moved.reach), (region.flow_reach, moved.flow_reach)):
        full = np.zeros(photo.shape[:2], np.float32)
        x0, y0, x1, y1 = region.box
        full[y0:y1, x0:x1] = before
        carried = np.zeros_like(full)
        x0, y0, x1, y1 = moved.box
        carried[y0:y1, x0:x1] = after
        shifted = np.roll(full, (11, 23), axis=(0, 1))
        shifted[:11], shifted[:, :23] = 0, 0
        inside = slice(y0, y1), slice(x0, x1)
        assert np.abs(carried[inside] - shifted[inside]).max() < 0.02


def test_a_still_face_does_not_flicker(ager, still_clip):
    """With the head still, the aged face changes from frame to frame no more than 20% beyond what
    the camera's noise changes (the issue's bar), through several detections."""
    live = LiveAger(ager)
    aged = _run(live, still_clip, 5.0)
    assert len(live.tracks) == 1
    assert flicker(still_clip, aged, clip_face_box()) <= 1.2
    assert np.abs(aged[-1].astype(int) - still_clip[-1]).mean() > 1.0  # it is aged, not passed through


def test_a_moving_face_is_followed_and_aged(ager, moving_clip):
    live = LiveAger(ager)
    aged = _run(live, moving_clip, 5.0)
    assert len(live.tracks) == 1 and live.tracks[0].misses == 0
    # the change follows the face: inside the face box around where the clip puts it each frame, aged
    for frame, out in zip(moving_clip[::6], aged[::6], strict=True):
        (face,) = ager.detector.detect(frame)
        x0, y0, x1, y1 = face.box.astype(int)
        assert np.abs(out[y0:y1, x0:x1].astype(int) - frame[y0:y1, x0:x1]).mean() > 4
    # the latent, mask and edits were made once, not per frame
    assert len(live.timings["detect"]) == -(-len(moving_clip) // DETECT_EVERY)


def test_the_age_can_change_while_streaming(ager, still_clip):
    live = LiveAger(ager)
    old = _run(live, still_clip[:3], 5.0)[-1]
    young = live.frame(still_clip[3], 0.0)
    x0, y0, x1, y1 = clip_face_box()
    assert np.abs(old[y0:y1, x0:x1].astype(int) - young[y0:y1, x0:x1]).mean() > 4


def test_a_face_told_it_is_60_plus_starts_there(ager, still_clip):
    live = LiveAger(ager)
    _run(live, still_clip[:2], 0.0, source_group="60+")
    assert live.tracks[0].source_group is AgeGroup.SENIOR
    with pytest.raises(FaceAgingError, match="Unknown age group"):
        live.frame(still_clip[0], 0.0, source_group="ancient")


def test_frames_without_a_face_pass_through(ager):
    live = LiveAger(ager)
    grey = np.full((480, 640, 3), 128, np.uint8)
    assert np.array_equal(live.frame(grey, 5.0), grey)
    assert live.tracks == []


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory, selfie_box):
    """A 2 s, 640x480, 25 fps H.264 clip with an AAC tone."""
    clip = make_clip(rgb(SELFIE), selfie_box, 50, moving=True)
    return write_mp4(clip, tmp_path_factory.mktemp("video") / "clip.mp4", rate=25)


def _probe(path) -> tuple[int, float, tuple[int, int], list[str]]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
    with av.open(str(path)) as container:
        audio = [s.codec_context.name for s in container.streams.audio]
        video = container.streams.video[0]
        return frames, float(video.average_rate), (video.codec_context.width, video.codec_context.height), audio


def test_a_video_keeps_its_frames_rate_and_sound(ager, clip_mp4, tmp_path):
    out = tmp_path / "aged.mp4"
    report = age_video(ager, clip_mp4, out, 5.0)
    assert _probe(out) == _probe(clip_mp4) == (50, 25.0, (640, 480), ["aac"])
    assert report.frames == 50
    with av.open(str(clip_mp4)) as a, av.open(str(out)) as b:
        first_in = next(a.decode(video=0)).to_ndarray(format="rgb24").astype(int)
        first_out = next(b.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs(first_out - first_in).mean() > 1.0


def test_age_video_command(clip_mp4, tmp_path):
    out = tmp_path / "young.mp4"
    done = faceaging_cli("age-video", clip_mp4, "--age", "0-18", "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["frames"] == 50
    assert _probe(out)[:2] == (50, 25.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a video at all", "could not be read as a video"), (None, "has no video track")],
    ids=["garbage", "audio-only"],
)
def test_a_bad_video_gets_a_sentence(tmp_path, content, message):
    bad = tmp_path / "bad.mp4"
    if content is None:  # a real file with sound and no picture
        with av.open(str(bad), "w") as out:
            sound = out.add_stream("aac", rate=44100)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            frame.sample_rate = 44100
            out.mux(sound.encode(frame))
            out.mux(sound.encode())
    else:
        bad.write_bytes(content)
    done = faceaging_cli("age-video", bad, "--age", "60+", "--out", tmp_path / "out.mp4")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_the_age_option_reads_groups_and_positions(tmp_path):
    assert AgeGroup.position("60+") == 5.0 and AgeGroup.position("2.5") == 2.5
    done = faceaging_cli("age-video", "x.mp4", "--age", "90", "--out", tmp_path / "o.mp4")
    assert done.returncode == 2 and "a position from 0 to 5" in done.stderr
