"""KID and the paired comparison of two models' outputs (evaluation only; no weights needed)."""

import numpy as np
import pytest

from faceaging.cli import main
from faceaging.evaluation.realism import kid, mottling, paired_kid_difference, skin_patches


def features(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    return rng.normal(shift, 1.0, size=(n, 16))


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_gap():
    rng = np.random.default_rng(0)
    real = features(rng, 200)
    same, near, far = (
        kid(features(rng, 200), real),
        kid(features(rng, 200, 0.3), real),
        kid(features(rng, 200, 1.0), real),
    )
    assert abs(same) < 0.2 * near
    assert near < far


def test_a_bootstrap_resample_does_not_pair_a_face_with_its_own_copy():
    rng = np.random.default_rng(1)
    a, b = features(rng, 100), features(rng, 100)
    assert kid(a, b, np.arange(100), np.arange(100)) == pytest.approx(kid(a, b))
    i, j = rng.integers(0, 100, 100), rng.integers(0, 100, 100)
    # Same distribution: the repeated rows, counted as pairs, would make KID look far from zero.
    naive, masked = kid(a[i], b[j]), kid(a[i], b[j], i, j)
    assert abs(masked) < 0.2 * naive


def test_the_paired_difference_finds_the_closer_model_and_nothing_between_equal_ones():
    rng = np.random.default_rng(2)
    real, base = features(rng, 60), features(rng, 150)
    closer, further = base + 0.1, base + 0.8
    gap = paired_kid_difference(closer, further, real, resamples=200)
    assert gap["difference"] < 0 and gap["ci95"][1] < 0 and gap["share_of_resamples_new_lower"] == 1.0
    tie = paired_kid_difference(further, further, real, resamples=50)
    assert tie["difference"] == 0 and tie["ci95"] == [0.0, 0.0]


@pytest.mark.parametrize("command", ["compare-kid", "compare-realism"])
def test_comparing_two_models_refuses_outputs_of_different_slices(tmp_path, capsys, command):
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        crops = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
        np.savez(tmp_path / f"{name}.npz", crops=crops, true_groups=np.zeros(4, int), target_0=crops)
    assert main([command, str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 2
    assert "different faces" in capsys.readouterr().err


def test_mottling_grows_with_blotches_on_the_skin_and_ignores_an_even_tone():
    """Spot-sized patches of colour and lightness on the cheeks raise it; a smooth face, however
    lit or tinted, and fine noise below the band, do not."""
    import cv2

    rng = np.random.default_rng(2)
    skin = np.full((8, 128, 128, 3), (200, 150, 125), np.uint8)
    darker = np.full_like(skin, (120, 80, 60))
    assert mottling(skin)["chroma"] < 0.05 and mottling(darker)["luma"] < 0.05
    blotches = rng.normal(0, 1, (8, 128, 128, 3)).astype(np.float32)
    blotches = np.stack([cv2.GaussianBlur(b, (0, 0), 2.0) for b in blotches])
    blotches *= 25 / blotches.std()
    blotchy = np.clip(skin + blotches, 0, 255).astype(np.uint8)
    speckled = np.clip(skin + rng.normal(0, 6, skin.shape), 0, 255).astype(np.uint8)  # finer than spots
    assert mottling(blotchy)["chroma"] > 10 * mottling(skin)["chroma"] + 1
    assert mottling(blotchy)["luma"] > 2 * mottling(speckled)["luma"]
    # only the skin patches count: blotches outside them change nothing
    outside = skin.copy()
    outside[:, ~skin_patches(128)] = blotchy[:, ~skin_patches(128)]
    outside = np.where(
        cv2.dilate(skin_patches(128).astype(np.uint8), np.ones((25, 25)))[None, ..., None], skin, outside
    )
    assert mottling(outside)["chroma"] < 0.05


def _skin_like(n: int, seed: int, side: int = 64) -> np.ndarray:
    """Smooth, skin-coloured random fields with a little sensor noise: stand-ins for face crops."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        shading = cv2.resize(
            rng.normal(0, 12, (6, 6, 1)).astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC
        )
        image = np.array([190, 150, 130], np.float32) + shading[..., None] + rng.normal(0, 5, (side, side, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(images)


def _blotched(images: np.ndarray, seed: int) -> np.ndarray:
    """Red-brown patches of a cheek's scale, as the aged crops at 60+ showed."""
    import cv2

    rng = np.random.default_rng(seed)
    out = images.astype(np.float32)
    side = images.shape[1]
    for image in out:
        spots = np.zeros((side, side), np.float32)
        for x, y in rng.uniform(0.2, 0.8, (3, 2)) * side:
            cv2.circle(spots, (int(x), int(y)), side // 10, 1.0, -1)
        spots = cv2.GaussianBlur(spots, (0, 0), side / 30)[..., None]
        image += spots * np.array([25, -10, -10], np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_the_realism_judge_cannot_tell_two_real_halves_apart():
    from faceaging.evaluation.detector import two_sample_auc

    faces = _skin_like(80, seed=1)
    result = two_sample_auc(faces[:40], faces[40:], "full")
    assert result["low"] < 0.5 < result["high"] and 0.3 < result["auc"] < 0.7


def test_the_realism_judge_catches_blotches_by_colour_and_blur_by_texture():
    import cv2

    from faceaging.evaluation.detector import two_sample_auc

    real, others = _skin_like(40, seed=2), _skin_like(40, seed=3)
    blotched = _blotched(others, seed=4)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in others])
    assert two_sample_auc(real, blotched, "full")["auc"] > 0.9
    assert two_sample_auc(real, blotched, "colour")["auc"] > 0.9
    assert two_sample_auc(real, blurred, "texture")["auc"] > 0.9
    # The colour view is blind to what only the texture shows, and the other way round.
    assert two_sample_auc(real, blurred, "colour")["auc"] < 0.8


def test_the_paired_realism_difference_finds_the_blotchy_model_and_nothing_between_equal_ones():
    from faceaging.evaluation.detector import paired_auc_difference

    real, sources = _skin_like(40, seed=5), _skin_like(40, seed=6)
    blotchy = _blotched(sources, seed=7)
    worse = paired_auc_difference(real, blotchy, sources, "colour")
    assert worse["new"] > worse["old"] and worse["low"] > 0
    same = paired_auc_difference(real, sources, sources, "colour")
    assert same["difference"] == 0 and same["low"] == same["high"] == 0


def test_skin_tone_change_sees_a_lighter_complexion_and_not_a_changed_background():
    from faceaging.evaluation.realism import skin_patches, skin_tone_change

    faces = np.full((6, 128, 128, 3), (150, 110, 90), np.uint8)
    lighter, background = faces.copy(), faces.copy()
    lighter[:, skin_patches(128)] += 30  # the skin alone, lighter
    background[:, ~skin_patches(128)] = 20  # everything but the skin
    change = skin_tone_change(faces, lighter)
    assert change["delta_l_mean"] > 8 and change["delta_e_median"] > 8 and change["faces"] == 6
    assert skin_tone_change(faces, background)["delta_e_p90"] < 1e-3


def test_the_ethnicity_label_is_read_from_the_utkface_name_and_missing_where_it_is():
    from faceaging.training.data import ETHNICITIES, utkface_ethnicity

    assert ETHNICITIES[utkface_ethnicity("26_0_1_20170104023102422.jpg.chip.jpg")] == "Black"
    assert utkface_ethnicity("39_1_20170116174525125.jpg.chip.jpg") == -1
