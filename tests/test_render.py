"""The photo renderer: the age edit applied at the photo's own resolution, bounded by the head mask."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from conftest import EXAMPLES, GROUP_PHOTO, faceaging_cli, rgb
from PIL import Image

from faceaging import AgeGroup
from faceaging.align import CROP_SIZE, align_face, canonical_landmarks
from faceaging.edit import BAND_SIGMAS, AgeEdit
from faceaging.region import head_region
from faceaging.render import FACE_LUMA_BOUND, composite, line_likeness, render_edit, wrinkle_likeness

PORTRAIT = EXAMPLES / "eileen_collins_nasa_portrait.png"


def _zero_edit() -> AgeEdit:
    size = CROP_SIZE
    flow, shift = torch.zeros(1, 2, size, size), torch.zeros(1, 3, size, size)
    return AgeEdit(flow, shift, torch.ones(1, len(BAND_SIGMAS), size, size))


def _textured_photo(height: int, width: int) -> np.ndarray:
    """Sharp random texture with a bright blob: any resampling or filtering would show."""
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cv2.circle(noise, (width // 2, height // 2), min(height, width) // 4, (230, 190, 160), -1)
    return noise


def _region_of_crop_at(photo: np.ndarray, side: float, offset: float):
    """The head region of a face whose canonical crop covers photo pixels offset .. offset + side
    (crop pixel c lands on offset + c * side / CROP_SIZE)."""
    _, matrix = align_face(photo, canonical_landmarks() / CROP_SIZE * side + offset)
    return head_region(photo, matrix, CROP_SIZE)


@pytest.mark.parametrize("face_side", [240, 1600], ids=["native", "worked-out-smaller"])
def test_a_zero_edit_leaves_the_photo_untouched_at_its_own_resolution(face_side):
    """The sampling map with no flow is the identity, sampled once at the photo's own pixels; also
    when the head region is larger than the side the edit is worked out at."""
    photo = _textured_photo(face_side * 2, face_side * 2)
    # landmarks of a face `face_side` px across the canonical crop's width, centred in the photo
    region = _region_of_crop_at(photo, face_side, face_side / 2)
    assert (region.scale < 1) == (face_side > 1000)
    x0, y0, x1, y1 = region.box
    rendered = render_edit(photo, region, _zero_edit())
    assert rendered.shape == (y1 - y0, x1 - x0, 3)
    assert np.array_equal(composite(photo, [(region, rendered)]), photo)


@pytest.fixture(scope="module")
def aged_portrait(ager):
    return ager.age(PORTRAIT)


def test_nothing_outside_the_head_mask_changes(aged_portrait):
    result = aged_portrait
    (face,) = result.faces
    region = face.region
    assert region.scale == 1.0  # a 512 px photo is worked on at its own resolution
    x0, y0, x1, y1 = region.box
    touched = np.zeros(result.photo.shape[:2], bool)
    touched[y0:y1, x0:x1] = (region.reach > 0) | (region.inner_reach > 0) | (region.flow_reach > 0)
    assert touched.mean() < 0.5  # the mask is a head, not the photo
    for group in AgeGroup:
        photo = result.photos[group]
        assert np.array_equal(photo[~touched], result.photo[~touched]), group.label
        if group != face.source_group:
            assert np.abs(photo[touched].astype(int) - result.photo[touched].astype(int)).mean() > 0.5


def test_the_edit_reaches_the_hair_and_keeps_the_photo_sharp(aged_portrait):
    """Hair above the crop greys at 60+, and the face keeps the photo's own fine detail."""
    result = aged_portrait
    (face,) = result.faces
    x0, y0, x1, y1 = face.region.box
    # rows of the head region above the canonical crop's top edge: hair only
    crop_top = np.linalg.inv(np.vstack([face.matrix, [0, 0, 1]]))[:2] @ np.array([CROP_SIZE / 2, 0, 1])
    above = slice(y0, int(crop_top[1]) - 2)
    hair = face.region.reach[: above.stop - y0] > 0.5
    assert hair.sum() > 100

    def luma(photo):
        return photo[above, x0:x1].astype(float).mean(-1)[hair]

    greyed = luma(result.photos[AgeGroup.SENIOR]) - luma(result.photo)
    assert greyed.mean() > 3

    def fine(photo):
        grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
        bx0, by0, bx1, by1 = face.box.astype(int)
        return np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 1.5))[by0:by1, bx0:bx1].mean()

    # The old paste-back scaled the 128 px crop up: far from the face's own group it kept under
    # half of the photo's fine detail.
    assert fine(result.photos[AgeGroup.SENIOR]) > 0.8 * fine(result.photo)


def test_the_same_photo_ages_the_same_every_time(ager):
    """GrabCut's colour models start from OpenCV's global random state: unseeded, a second upload of
    the same photo got other head masks (up to 113 grey levels apart on the Apollo 11 crew)."""
    first, second, third = (ager.age(GROUP_PHOTO, steps=0) for _ in range(3))
    for group in AgeGroup:
        assert np.array_equal(first.photos[group], second.photos[group]), group.label
        assert np.array_equal(second.photos[group], third.photos[group]), group.label


def test_aligned_crops_come_out_at_the_faces_own_resolution(ager):
    """A face twice the portrait's size gets aligned crops cut from the aged photos at its own scale."""
    photo = rgb(PORTRAIT)
    result = ager.age(cv2.resize(photo, (photo.shape[1] * 2, photo.shape[0] * 2), interpolation=cv2.INTER_CUBIC))
    (face,) = result.faces
    assert face.crop_side > CROP_SIZE
    crop = result.aligned(0, result.photos[AgeGroup.SENIOR])
    assert crop.shape == (face.crop_side, face.crop_side, 3)
    assert np.array_equal(result.aligned(0, result.photo), align_face(result.photo, face.landmarks, face.crop_side)[0])


def test_evaluate_photos_command_prints_and_writes_the_figures(tmp_path):
    pytest.importorskip("dlib")
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PORTRAIT, folder)
    out = tmp_path / "report.json"
    proc = faceaging_cli("evaluate-photos", folder, "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "fine detail" in proc.stdout
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["group"] for r in rows] == [g.label for g in AgeGroup]
    own = next(r for r in rows if r["steps_from_own"] == 0)
    assert own["fine_detail_ratio"] == 1.0 and own["delta_e"] == 0.0 and own["identity_distance"] == 0.0
    assert own["mottling_luma_ratio"] == 1.0 and own["mottling_chroma_ratio"] == 1.0
    assert own["hair_lightness_change"] == 0.0 and own["hair_chroma_ratio"] == 1.0
    assert own["skin_lightness_change"] == 0.0 and own["skin_delta_e"] == 0.0
    assert report["bars"]["skin_delta_e_max"] == max(r["skin_delta_e"] for r in rows) > 0
    oldest = rows[-1]  # 60+, older than her own group: her golden-brown hair greys
    assert oldest["hair_lightness_change"] > 3 and oldest["hair_chroma_ratio"] < 0.8
    assert report["groups"]["60+"]["hair_chroma_ratio_mean"] == oldest["hair_chroma_ratio"]
    for r in rows:
        assert r["background_change"] == 0.0
        assert 0.5 < r["fine_detail_ratio"] < 2.0
        assert r["age"] is not None and 0 < r["age"] < 100
        assert 0 < r["age_of_views"] < 100 and r["age_spread"] >= 0
        assert 0 < r["age_of_crop"] < 100
    # The model's own crop at the face's own group is the input crop: the judge reads it as the photo.
    assert own["age_of_crop"] == pytest.approx(own["input_age"], abs=8)
    assert "median of views" in proc.stdout
    aged = [r["identity_distance"] for r in rows if r["steps_from_own"] > 0]
    assert np.mean(aged) > 0
    assert report["bars"]["identity_distance_mean"] == pytest.approx(np.mean(aged), abs=1e-3)
    assert report["groups"][own["group"]]["identity_distance_mean"] is None  # the input itself is not aged
    assert report["bars"]["age_of_views_at_0_18_of_faces_over_25"] is not None or own["input_age"] <= 25
    assert report["bars"]["seconds_per_photo_median"] > 0


def test_the_judges_views_of_a_photo_look_the_same_and_hold_the_same_face():
    """`_views`: the photo mirrored, re-encoded, shifted and scaled, each with the face's box moved
    with it, so the judge reads the same face in every view."""
    from faceaging.evaluation.photos import VIEW_SCALE, _views

    photo = rgb(PORTRAIT)
    box = np.array([40.0, 150.0, 190.0, 330.0])  # off-centre: a box not moved with the mirror misses it
    views = _views(photo, box)
    assert len(views) == 5 and np.array_equal(views[0][0], photo)
    same = photo[150:330, 40:190].astype(int)
    for index, (view, near) in enumerate(views):
        x0, y0, x1, y1 = near.round().astype(int)
        cut = view[y0:y1, x0:x1][:, ::-1] if index == 1 else view[y0:y1, x0:x1]  # view 1 is mirrored
        cut = cv2.resize(cut, (same.shape[1], same.shape[0]), interpolation=cv2.INTER_AREA)
        assert np.abs(cut.astype(int) - same).mean() < 6, index
    assert views[4][0].shape[0] == round(photo.shape[0] * VIEW_SCALE)


def test_evaluate_photos_on_a_missing_folder_says_so(tmp_path):
    proc = faceaging_cli("evaluate-photos", tmp_path / "nowhere", timeout=120)
    assert proc.returncode == 2
    assert "not a folder" in proc.stderr and "Traceback" not in proc.stderr


def test_a_colour_cast_is_removed_from_the_face_and_tone_kept_only_far_from_its_group():
    """A uniform tinted shift over the crop: its tint never reaches the face (white balance kept);
    its brightness does only when asked (`kept_tone`: from two groups away on)."""
    photo = np.full((480, 480, 3), 120, np.uint8)
    region = _region_of_crop_at(photo, 240, 120)
    edit = _zero_edit()
    edit.shift[:, 0] += 0.2  # +25 grey levels of red
    edit.shift[:, 1:] += 0.1  # and +13 of the others
    x0, y0, x1, y1 = region.box
    centre = (slice(240 - y0 - 30, 240 - y0 + 30), slice(240 - x0 - 30, 240 - x0 + 30))
    near = render_edit(photo, region, edit, source=0, position=1)[centre] - 120
    far = render_edit(photo, region, edit, source=0, position=3)[centre] - 120
    assert np.abs(near).max() < 1.0  # no tint and no brightness change one group away
    assert np.abs(far - far.mean(-1, keepdims=True)).max() < 1.0  # no tint far away either
    assert far.mean() == pytest.approx(127.5 * (0.2 + 0.1 + 0.1) / 3, abs=1.0)  # but the brightness change


def test_towards_younger_groups_a_painted_blotch_is_bounded_and_mild_shading_kept():
    """The shift's local brightness over the face: towards a younger group a deep blotch (the
    learned luma edit's dark goatee at 0-18) is held to about FACE_LUMA_BOUND while a mild pattern
    passes as it is; towards an older group the whole pattern is kept (it reads as age)."""
    photo = np.full((480, 480, 3), 128, np.uint8)
    region = _region_of_crop_at(photo, 240, 120)  # crop pixel c -> photo 120 + c * 240 / 128
    edit = _zero_edit()
    edit.shift[..., 88:104, 52:76] -= 1.0  # a blotch over the chin: -127 grey levels
    edit.shift[..., 30:46, 52:76] += 0.05  # mild shading on the forehead: +6 grey levels
    x0, y0 = region.box[:2]
    blotch = (slice(120 + 180 - y0, 120 + 188 - y0), slice(120 + 112 - x0, 120 + 128 - x0))
    shading = (slice(120 + 68 - y0, 120 + 76 - y0), slice(120 + 112 - x0, 120 + 128 - x0))
    # One group away either way, so that no mean brightness is kept (`kept_tone`) in both.
    younger = render_edit(photo, region, edit, source=2, position=1) - 128
    older = render_edit(photo, region, edit, source=0, position=1) - 128
    bound = 127.5 * FACE_LUMA_BOUND
    assert older[blotch].mean() < -100
    assert -bound - 2 < younger[blotch].mean() < -0.8 * bound
    assert older[shading].mean() > 5
    assert younger[shading].mean() == pytest.approx(older[shading].mean(), abs=0.5)


def test_towards_older_groups_wrinkles_are_amplified_and_spots_much_less():
    """Band gains that double the detail: towards an older group a line (a wrinkle) gains about as
    much as it would whole, a row of dots (freckles, pores, noise) far less; towards a younger group
    the gains apply to both alike (and the structure tensor's coherence tells stripes from noise)."""
    photo = np.full((480, 480, 3), 150, np.uint8)
    cv2.line(photo, (190, 220), (290, 220), (110, 110, 110), 2)  # the crop covers 120..360
    for x in range(190, 300, 20):
        cv2.circle(photo, (x, 280), 2, (110, 110, 110), -1)
    region = _region_of_crop_at(photo, 240, 120)
    x0, y0, x1, y1 = region.box
    edit = _zero_edit()
    edit.gains += 1.0
    before = photo[y0:y1, x0:x1].astype(np.float32).mean(2)
    rows = np.arange(y1 - y0)[:, None] + y0
    line, dots = (before < 140) & (rows < 250), (before < 140) & (rows > 250)

    def contrast_gain(rendered: np.ndarray, where: np.ndarray) -> float:
        return float((150 - rendered.mean(2)[where]).mean() / (150 - before[where]).mean())

    older = render_edit(photo, region, edit, source=0, position=5)
    younger = render_edit(photo, region, edit, source=5, position=0)
    assert contrast_gain(older, line) > 1.5
    assert contrast_gain(older, dots) < 1.25
    assert contrast_gain(younger, dots) > 1.5
    assert contrast_gain(older, line) == pytest.approx(contrast_gain(younger, line), abs=0.05)
    stripes = np.tile(np.sin(np.arange(64) / 2.0)[:, None], (1, 64)).astype(np.float32)
    noise = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    assert line_likeness(stripes, 2)[8:-8, 8:-8].mean() > 0.95
    assert line_likeness(noise, 2)[8:-8, 8:-8].mean() < 0.35


def test_towards_younger_groups_wrinkles_fade_further_than_edges_and_the_skin_keeps_its_grain():
    """Gains of 0.7 towards a younger group on skin (fine noise) with faint lines on the forehead
    (wrinkles), a faint line on an eye (a lid) and a strong line across the cheek (a spectacle
    frame): the wrinkles fade well below 0.7 of their depth, the lid and the frame keep about the
    crop's own 0.7, the skin's fine detail stays near its own level (grain gives back what the
    wrinkles held), and the same photo gets the same grain every time."""
    rng = np.random.default_rng(1)
    skin = 150 + cv2.GaussianBlur(rng.normal(0, 6, (480, 480)).astype(np.float32), (0, 0), 0.7)
    photo = np.repeat(np.clip(skin, 0, 255)[..., None], 3, 2).astype(np.uint8)
    # the crop covers photo pixels 120..360: crop pixel c lands on 120 + c * 240 / 128
    wrinkles, lid, frame = (np.zeros((480, 480), np.uint8) for _ in range(3))
    for y in range(145, 175, 8):  # the forehead: crop rows 13..29
        cv2.line(wrinkles, (190, y), (290, y + 3), 1, 1)
    cv2.line(lid, (180, 190), (206, 190), 1, 1)  # on the left eye (crop 39, 37)
    cv2.line(frame, (160, 225), (320, 225), 1, 3)  # the cheeks, below the eyes
    photo[(wrinkles > 0) | (lid > 0)] -= 20
    photo[frame > 0] = 40
    region = _region_of_crop_at(photo, 240, 120)
    x0, y0, x1, y1 = region.box
    edit = _zero_edit()
    edit.gains *= 0.7
    before = photo[y0:y1, x0:x1].astype(np.float32).mean(2)
    younger = render_edit(photo, region, edit, source=5, position=0).mean(2)
    skin_only = (slice(240 - y0, 265 - y0), slice(175 - x0, 305 - x0))

    def depth(image: np.ndarray, lines: np.ndarray) -> float:
        return float(image[skin_only].mean() - image[lines[y0:y1, x0:x1] > 0].mean())

    assert depth(younger, wrinkles) < 0.55 * depth(before, wrinkles)
    assert depth(younger, lid) > 0.6 * depth(before, lid)
    assert depth(younger, frame) > 0.6 * depth(before, frame)

    def fine(image: np.ndarray, rows: slice) -> float:
        detail = image - cv2.GaussianBlur(image, (0, 0), 1.5)
        return float(np.abs(detail[rows.start - y0 : rows.stop - y0, 175 - x0 : 305 - x0]).mean())

    assert fine(younger, slice(240, 265)) > 0.8 * fine(before, slice(240, 265))  # plain skin
    np.testing.assert_array_equal(younger, render_edit(photo, region, edit, source=5, position=0).mean(2))
    stripes = np.tile(np.sin(np.arange(64) / 2.0)[:, None], (1, 64)).astype(np.float32)
    assert wrinkle_likeness(5 * stripes, 2, line_likeness(stripes, 2))[8:-8, 8:-8].mean() > 0.8
    assert wrinkle_likeness(60 * stripes, 2, line_likeness(stripes, 2))[8:-8, 8:-8].mean() < 0.2


def test_the_whole_head_of_hair_greys_towards_older_groups_and_never_lightens_towards_younger():
    """A shift that lightens only at the crop's sides (the temples): past the crop the hair greys
    by the lightening's mean, so the crown above the crop greys too (carried past the crop by its
    border values, the shift's own pattern left the crown dark under white temples); towards a
    younger group nothing past the crop lightens."""
    photo = np.full((480, 480, 3), 215, np.uint8)  # a light wall
    cv2.ellipse(photo, (240, 225), (150, 170), 0, 0, 360, (60, 60, 60), -1)  # dark hair
    cv2.ellipse(photo, (240, 255), (82, 100), 0, 0, 360, (200, 150, 130), -1)  # the face
    region = _region_of_crop_at(photo, 200, 140)  # the crop: x, y in 140..340
    edit = _zero_edit()
    edit.shift[..., :24] += 0.3
    edit.shift[..., -24:] += 0.3
    x0, y0, x1, y1 = region.box
    before = photo[y0:y1, x0:x1].astype(np.float32)
    crown = (slice(85 - y0, 115 - y0), slice(230 - x0, 250 - x0))  # above the crop's top
    temple = (slice(220 - y0, 240 - y0), slice(130 - x0, 145 - x0))  # beside its left edge
    older = render_edit(photo, region, edit, source=1, position=5) - before
    assert older[temple].mean() > 3
    assert older[crown].mean() > 0.5 * older[temple].mean()
    younger = render_edit(photo, region, edit, source=3, position=0) - before
    assert younger[crown].mean() < 0.5


def test_brown_hair_greys_towards_older_groups_losing_its_colour_and_keeps_it_towards_younger():
    """Greying is more than lightening: brown hair that greys loses most of its colour (lightened
    only, it turned blond), while the face keeps its own; towards a younger group the hair is as
    it was."""
    photo = np.full((480, 480, 3), 215, np.uint8)  # a light wall
    cv2.ellipse(photo, (240, 225), (150, 170), 0, 0, 360, (110, 70, 35), -1)  # brown hair
    cv2.ellipse(photo, (240, 255), (82, 100), 0, 0, 360, (200, 150, 130), -1)  # the face
    region = _region_of_crop_at(photo, 200, 140)  # the crop: x, y in 140..340
    edit = _zero_edit()
    edit.shift += 0.5  # a lightening everywhere; over the face only its (kept) mean matters
    x0, y0, x1, y1 = region.box
    crown = (slice(85 - y0, 115 - y0), slice(230 - x0, 250 - x0))
    cheek = (slice(250 - y0, 270 - y0), slice(200 - x0, 220 - x0))

    def colour(pixels: np.ndarray) -> float:  # mean spread between the channels
        return float(np.ptp(pixels, axis=-1).mean())

    before = photo[y0:y1, x0:x1].astype(np.float32)
    older = render_edit(photo, region, edit, source=1, position=5)
    younger = render_edit(photo, region, edit, source=5, position=1)
    assert older[crown].mean() > before[crown].mean() + 10  # lighter
    assert colour(older[crown]) < 0.6 * colour(before[crown])  # and greyer
    assert colour(older[cheek]) == pytest.approx(colour(before[cheek]), abs=2)
    assert colour(younger[crown]) == pytest.approx(colour(before[crown]), abs=1)


def test_a_full_head_of_hair_greys_up_to_its_crown():
    """Hair that reaches 0.7 of the crop above it (a full, high head of hair) greys at its crown
    too: with the region ending half a crop above the crop, the crown kept its colour above grey."""
    photo = np.full((480, 480, 3), 215, np.uint8)  # a light wall
    cv2.ellipse(photo, (270, 250), (150, 225), 0, 0, 360, (110, 70, 35), -1)  # high brown hair, top at y 25
    cv2.ellipse(photo, (270, 285), (82, 100), 0, 0, 360, (200, 150, 130), -1)  # the face
    region = _region_of_crop_at(photo, 200, 170)  # the crop: x, y in 170..370
    edit = _zero_edit()
    edit.shift += 0.5
    x0, y0, x1, y1 = region.box
    before = photo[y0:y1, x0:x1].astype(np.float32)
    older = render_edit(photo, region, edit, source=1, position=5)
    crown = (slice(45 - y0, 60 - y0), slice(260 - x0, 280 - x0))  # 0.55-0.6 of the crop above it
    assert older[crown].mean() > before[crown].mean() + 10
    assert np.ptp(older[crown], axis=-1).mean() < 0.6 * np.ptp(before[crown], axis=-1).mean()


def test_the_learned_edits_lightening_greys_the_hair_evenly_not_in_its_own_outline():
    """Beyond the face the learned edit's lightening (it lightens what it takes for background)
    is one amount: a wedge of it beside one temple greys the hair on both sides alike, where taken
    as it is it left a pale ghost on one side only."""
    photo = np.full((480, 480, 3), 215, np.uint8)  # a light wall
    cv2.ellipse(photo, (240, 225), (150, 170), 0, 0, 360, (60, 60, 60), -1)  # dark hair
    cv2.ellipse(photo, (240, 255), (82, 100), 0, 0, 360, (200, 150, 130), -1)  # the face
    region = _region_of_crop_at(photo, 200, 140)  # the crop: x, y in 140..340
    edit = _zero_edit()
    edit.learned = torch.zeros(1, 1, CROP_SIZE, CROP_SIZE)
    edit.learned[..., 10:40, -20:] = 0.8  # beside the right temple
    edit.shift += edit.learned
    x0, y0, x1, y1 = region.box
    before = photo[y0:y1, x0:x1].astype(np.float32)
    left, right = ((slice(172 - y0, 188 - y0), slice(x - x0, x + 10 - x0)) for x in (143, 328))
    even = render_edit(photo, region, edit, source=1, position=5) - before
    assert even[right].mean() > 2
    assert even[left].mean() == pytest.approx(even[right].mean(), rel=0.2)
    edit.learned = None  # all of the shift taken as the prior's: its pattern is kept
    ghost = render_edit(photo, region, edit, source=1, position=5) - before
    assert ghost[right].mean() > 3 * max(ghost[left].mean(), 1)


def test_a_black_and_white_photo_stays_black_and_white_at_every_age(ager):
    grey = np.asarray(Image.open(PORTRAIT).convert("L").convert("RGB"))
    result = ager.age(grey, steps=0)
    for group in AgeGroup:
        photo = result.photos[group].astype(int)
        assert (photo == photo[..., :1]).all(), group.label
