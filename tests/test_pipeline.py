"""FaceAger end to end on the example photos, plus the error paths a user can hit."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import EXAMPLE_PHOTOS, EXAMPLES, GROUP_PHOTO, ROOT, faceaging_cli, rgb
from PIL import Image

from faceaging import AgeGroup, FaceAgingError
from faceaging.ages import NUM_GROUPS
from faceaging.align import CROP_SIZE, to_tensor, to_uint8
from faceaging.editor import AgeStrength


@pytest.fixture(scope="module")
def results(ager):
    return {p.name: ager.age(p) for p in EXAMPLE_PHOTOS}


@pytest.mark.parametrize("path", EXAMPLE_PHOTOS, ids=lambda p: p.stem)
def test_every_example_is_aged_to_six_groups(results, path):
    result = results[path.name]
    photo = rgb(path)
    assert len(result.faces) >= 1
    assert result.photo.shape == photo.shape
    assert set(result.photos) == set(AgeGroup)
    for group in AgeGroup:
        assert result.photos[group].shape == photo.shape and result.photos[group].dtype == np.uint8
    for face in result.faces:
        assert face.crop.shape == (CROP_SIZE, CROP_SIZE, 3)
        assert all(face.aged_crops[g].shape == (CROP_SIZE, CROP_SIZE, 3) for g in AgeGroup)
        assert isinstance(face.source_group, AgeGroup)


def test_a_prepared_face_holds_what_belongs_to_the_person_and_makes_any_age_once(ager):
    photo = rgb(EXAMPLES / "eileen_collins_nasa_portrait.png")
    found = ager.detector.detect(photo)
    face = ager.prepare(photo, found[:1], steps=0)[0]
    assert face.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and face.latent.shape[:2] == (1, 2)
    assert face.region is not None and np.array_equal(face.landmarks, found[0].landmarks)
    assert face.source_group == face.estimated_group == AgeGroup(int(face.probabilities.argmax()))
    edit = face.edit_at(4.5)
    assert face.edit_at(4.5) is edit  # kept, not made again
    rendered = face.render_at(photo, face.source_group)  # at its own group the face is the photo
    x0, y0, x1, y1 = face.region.box
    assert np.abs(rendered - photo[y0:y1, x0:x1]).mean() < 1.0
    assert np.abs(face.render_at(photo, 5.0 - face.source_group) - photo[y0:y1, x0:x1]).mean() > 1.0
    # Told another group, every change starts there: the edits made from the estimate are dropped.
    other = AgeGroup.SENIOR if face.source_group != AgeGroup.SENIOR else AgeGroup.CHILD
    face.start_from(other)
    assert face.source_group == other and 4.5 not in face.edits and face.estimated_group != other


def test_prepared_faces_are_the_same_for_a_photo_and_for_its_aligned_crops(ager, results):
    result = results["luciano_codait_cc0.png"]
    face = result.faces[0]
    alone = ager.prepare_crops(face.crop[None], steps=10)[0]
    assert alone.region is None and alone.source_group == face.source_group
    assert torch.equal(alone.z0, face.z0)
    ager.edit_groups([alone])
    for group in AgeGroup:
        assert np.abs(alone.aged_crops[group].astype(int) - face.aged_crops[group].astype(int)).max() <= 1


def test_group_photo_yields_all_three_astronauts(results):
    assert len(results[GROUP_PHOTO.name].faces) == 3


def test_paste_back_changes_the_faces_and_leaves_the_rest_of_the_photo(results):
    result = results[GROUP_PHOTO.name]
    changed = np.abs(result.photos[AgeGroup.SENIOR].astype(int) - result.photo.astype(int)).sum(-1) > 0
    inside = np.zeros_like(changed)
    for face in result.faces:
        x1, y1, x2, y2 = face.box.astype(int)
        pad = int((x2 - x1) * 0.6)
        inside[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad] = True
    assert changed[inside].mean() > 0.05
    assert not changed[~inside].any()


def test_aging_changes_the_face_across_groups(results):
    face = results["eileen_collins_nasa_portrait.png"].faces[0]
    young, old = (face.aged_crops[g].astype(float) for g in (AgeGroup.CHILD, AgeGroup.SENIOR))
    assert np.abs(young - old).mean() > 1.0


def test_slider_interpolates_between_groups_from_the_cached_latent(ager, results):
    result = results["eileen_collins_nasa_portrait.png"]
    at = {p: result.crops_at(p)[0].astype(float) for p in (2.0, 2.5, 3.0)}
    between = np.abs(at[2.5] - (at[2.0] + at[3.0]) / 2).mean()
    assert between < np.abs(at[2.0] - at[3.0]).mean()
    assert result.render_at(4.2).shape == result.photo.shape


def test_whole_groups_reuse_the_six_renders_and_match_a_fresh_generator_pass(ager, results):
    result = results["eileen_collins_nasa_portrait.png"]
    assert np.array_equal(result.render_at(3.0), result.photos[AgeGroup.FORTIES])
    face = result.faces[0]
    face.edits.pop(3.0)  # made again, alone
    with torch.inference_mode():
        fresh = to_uint8(face.edit_at(3.0).apply_to(face.tensor))[0]
    # The same computation in a batch of one instead of six: float sums (blurs, the prior's mixing)
    # may differ in the last bit, and a pixel may round one grey level the other way.
    assert np.abs(fresh.astype(int) - face.aged_crops[AgeGroup.FORTIES].astype(int)).max() <= 1


def test_a_face_keeps_the_photo_at_its_own_age_and_the_generator_takes_over_far_from_it(results):
    result = results["luciano_codait_cc0.png"]
    face = result.faces[0]
    own = face.source_group
    far = AgeGroup.CHILD if own >= 3 else AgeGroup.SENIOR
    kept = np.abs(face.aged_crops[own].astype(int) - face.crop.astype(int))
    assert kept.max() <= 1  # the generator edits the input and is exact at its own age, up to rounding
    x1, y1, x2, y2 = face.box.astype(int)
    region = (slice(y1, y2), slice(x1, x2))

    def change(group: AgeGroup) -> float:
        return np.abs(result.photos[group][region].astype(float) - result.photo[region].astype(float)).mean()

    assert change(own) < 1.5  # the photo, up to warping and rounding
    assert change(far) > 5 * change(own)


def test_the_younger_strength_is_raised_at_0_18_and_19_29_only(ager):
    from faceaging.editor import YOUNGER_BOOST

    positions = torch.tensor([0.0, 1.0, 1.5, 2.0, 3.0, 5.0])
    strengths = ager.editor.prior_strengths(positions, torch.full((6,), 4))[:, 0]
    younger, older = ager.editor.age_strength
    boosted = younger * YOUNGER_BOOST
    expected = [boosted, boosted, (younger + boosted) / 2, younger, younger, older]
    assert strengths.tolist() == pytest.approx(expected)


def test_age_strength_scales_each_direction_apart_and_keeps_the_face_at_its_own_age(ager):
    renders = {}
    saved = ager.editor.age_strength
    try:
        for strength in ((1.0, 1.0), (1.0, 2.0)):
            ager.editor.age_strength = AgeStrength.of(strength)
            face = ager.age(EXAMPLES / "eileen_collins_nasa_portrait.png", steps=0).faces[0]
            renders[strength] = {g: face.aged_crops[g].astype(float) for g in AgeGroup}
    finally:
        ager.editor.age_strength = saved
    own = face.source_group
    assert AgeGroup.CHILD < own < AgeGroup.SENIOR  # the test needs both directions
    same, stronger = renders[(1.0, 1.0)], renders[(1.0, 2.0)]
    for group in AgeGroup:
        if group <= own:  # the face itself, and every younger group, untouched by the older strength
            assert np.array_equal(same[group], stronger[group])
    change = {s: np.abs(r[AgeGroup.SENIOR] - r[own]).mean() for s, r in renders.items()}
    assert change[(1.0, 2.0)] > 1.1 * change[(1.0, 1.0)]  # the prior doubles; the learned edit stays


def test_identity_optimisation_moves_towards_the_person_only_until_close_enough(ager):
    from faceaging.ages import age_condition
    from faceaging.optimize import optimize_latent

    face = ager.age(rgb(EXAMPLE_PHOTOS[1]), steps=0).faces[0]
    x = to_tensor(face.crop[None])
    with torch.inference_mode():
        z0 = ager.encoder(x)
    own = int(face.source_group)
    furthest = torch.tensor([0.0 if own >= 3 else 5.0])
    strength = ager.editor.prior_strengths(furthest, torch.tensor([own]))
    args = (
        z0,
        x,
        age_condition(torch.tensor([float(own)])),
        age_condition(furthest),
        ager.editor.generator,
        ager.identity,
    )
    _, start = optimize_latent(*args, steps=0, prior_strength=strength)
    # Chasing the closest match lowers the distance; within reach, the encoder's latent is kept.
    _, chased = optimize_latent(*args, steps=5, max_seconds=float("inf"), target_distance=0.0, prior_strength=strength)
    kept_z, kept = optimize_latent(
        *args, steps=5, max_seconds=float("inf"), target_distance=1.0, prior_strength=strength
    )
    assert float(chased) < float(start)
    assert torch.equal(kept_z, z0) and float(kept) == pytest.approx(float(start), abs=1e-5)


def test_each_end_of_the_age_axis_has_its_own_optimised_latent(ager):
    """The latent for the older ages does not move when the younger end is pulled harder, and each
    render uses the latent of its side of the face's own group."""
    face = ager.age(rgb(EXAMPLE_PHOTOS[1]), steps=0).faces[0]
    x = to_tensor(face.crop[None])
    own = int(face.source_group)
    assert 0 < own < NUM_GROUPS - 1  # the test needs both directions
    saved, latents = ager.editor.age_strength, {}
    try:
        for younger in (saved.younger, 2 * saved.younger):
            ager.editor.age_strength = AgeStrength(younger, saved.older)
            inverted = ager.invert(x, 5, max_seconds=float("inf"))
            z0, latents[younger] = inverted.z0, inverted.latent
    finally:
        ager.editor.age_strength = saved
    z = latents[saved.younger]
    assert z.shape == (1, 2, *z0.shape[1:])
    assert not torch.equal(z[:, 0], latents[2 * saved.younger][:, 0])  # the younger end was optimised
    assert torch.equal(z[:, 1], latents[2 * saved.younger][:, 1])
    source = torch.tensor([own])
    for position, end in ((0.0, 0), (NUM_GROUPS - 1.0, 1)):
        both, one = (
            ager.editor.edits_at(x, latent, torch.tensor([position]), source)[1][0] for latent in (z, z[:, end])
        )
        assert np.array_equal(both, one)


def test_gif_cycles_through_the_ages(ager, results):
    gif = Image.open(io.BytesIO(results["luciano_codait_cc0.png"].gif()))
    assert gif.format == "GIF" and gif.n_frames == 21


def test_grid_has_a_row_per_face_and_seven_columns(results):
    grid = results[GROUP_PHOTO.name].grid()
    assert grid.shape == (3 * CROP_SIZE, 7 * CROP_SIZE, 3)


def test_progress_is_reported_in_order(ager):
    seen = []
    ager.age(EXAMPLE_PHOTOS[2], steps=2, progress=lambda fraction, text: seen.append((fraction, text)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] < 1
    assert any("Optimising identity" in t for _, t in seen)


def test_exif_orientation_is_respected(ager, tmp_path):
    upright = Image.open(EXAMPLE_PHOTOS[1]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored pixels lie on their side
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    result = ager.age(path, steps=0)
    assert result.photo.shape[:2] == (upright.height, upright.width)
    assert len(result.faces) == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: np.full((300, 300, 3), 128, np.uint8), "No face found"),
        (lambda: b"", "empty"),
        (lambda: b"this is a text file, not a photo", "not an image"),
        (lambda: (ROOT / "examples" / "grace_hopper_us_navy_portrait_1984.jpg").read_bytes()[:4000], "damaged"),
    ],
    ids=["blank", "zero bytes", "text", "truncated jpeg"],
)
def test_bad_input_raises_a_user_message(ager, make, message):
    with pytest.raises(FaceAgingError, match=message):
        ager.age(make())


def test_cli_writes_every_output_and_one_json_line(tmp_path):
    out = tmp_path / "out"
    proc = faceaging_cli("age", GROUP_PHOTO, "--out", out, "--steps", "2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["faces"] == 3 and len(summary["source_groups"]) == 3
    assert {"detect", "optimize", "render", "paste"} <= set(summary["seconds"])
    labels = ["0-18", "19-29", "30-39", "40-49", "50-59", "60+"]
    assert all((out / f"{label}.png").exists() for label in labels)
    for i in (1, 2, 3):
        assert all((out / f"face_{i}" / f"{label}.png").exists() for label in [*labels, "input"])
    assert Image.open(out / "grid.png").size == (7 * CROP_SIZE, 3 * CROP_SIZE)
    assert (out / "aging.gif").read_bytes()[:6] == b"GIF89a"


def test_cli_bad_input_exits_non_zero_with_a_message_and_no_traceback(tmp_path):
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("not a photo")
    proc = faceaging_cli("age", bogus, "--out", tmp_path / "o", timeout=300)
    assert proc.returncode == 2
    assert "not an image" in proc.stderr and "Traceback" not in proc.stderr


def test_a_tight_crop_whose_face_touches_every_edge_is_found_and_aged(ager, detector):
    photo = rgb(EXAMPLES / "grace_hopper_us_navy_portrait_1984.jpg")
    x1, y1, x2, y2 = detector.detect(photo)[0].box
    w, h = x2 - x1, y2 - y1
    crop = np.ascontiguousarray(photo[int(y1 + 0.1 * h) : int(y2 - 0.1 * h), int(x1 + 0.1 * w) : int(x2 - 0.1 * w)])
    assert detector.detect_batch([crop])[0] == []  # MTCNN on the crop as it is finds nothing
    result = ager.age(crop, steps=0)
    assert len(result.faces) == 1
    assert all(p.shape == crop.shape for p in result.photos.values())  # pasted back inside the photo
    far = AgeGroup.CHILD if result.faces[0].source_group >= 3 else AgeGroup.SENIOR
    assert np.abs(result.photos[far].astype(int) - crop.astype(int)).mean() > 1


def test_latent_adam_matches_torch_optim():
    from faceaging.optimize import _Adam

    torch.manual_seed(0)
    ours = torch.randn(4, 5, requires_grad=True)
    theirs = ours.detach().clone().requires_grad_(True)
    reference, adam = torch.optim.Adam([theirs], lr=0.05), _Adam(ours, 0.05)
    for _ in range(5):
        goal = torch.randn(4, 5)
        reference.zero_grad()
        (theirs - goal).pow(2).sum().backward()
        reference.step()
        (ours - goal).pow(2).sum().backward()
        adam.step()
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_aging_a_photo_imports_neither_dynamo_nor_torchvision_models():
    # torch._dynamo (via torch.optim or torchvision.ops) costs 1.5-2.5 s and ~100 MB at the first photo.
    code = (
        "import sys; from faceaging import FaceAger; "
        f"FaceAger.from_pretrained().age({str(EXAMPLES / 'eileen_collins_nasa_portrait.png')!r}, steps=3); "
        "print([m for m in ('torch._dynamo', 'torchvision.models') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_face_told_it_is_60_plus_is_only_made_younger(ager):
    """The person's own group replaces the estimate where every change starts: at 60+ the photo is
    itself, every other group changes it, and the estimate is still reported."""
    photo = EXAMPLES / "eileen_collins_nasa_portrait.png"
    result = ager.age(photo, steps=0, source_group="60+")
    (face,) = result.faces
    assert (
        face.source_group == AgeGroup.SENIOR and face.estimated_group == ager.age(photo, steps=0).faces[0].source_group
    )
    assert np.array_equal(result.photos[AgeGroup.SENIOR], result.photo)
    for group in list(AgeGroup)[:-1]:
        assert np.abs(result.photos[group].astype(int) - result.photo.astype(int)).mean() > 0.3, group.label
    with pytest.raises(FaceAgingError, match="Unknown age group"):
        ager.age(photo, steps=0, source_group="ancient")


def test_cli_takes_the_persons_own_age_group(tmp_path):
    out = tmp_path / "out"
    photo = EXAMPLES / "luciano_codait_cc0.png"
    proc = faceaging_cli("age", photo, "--out", out, "--steps", "0", "--source-group", "0-18")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["source_groups"] == ["0-18"] and summary["estimated_groups"] != ["0-18"]
    assert np.array_equal(np.asarray(Image.open(out / "0-18.png")), rgb(photo))
