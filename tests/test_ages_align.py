import numpy as np
import pytest
import torch

from faceaging.ages import GROUP_LABELS, AgeGroup, age_condition
from faceaging.align import CROP_SIZE, align_face, canonical_landmarks, chip_from_crop, similarity_transform, warp_to
from faceaging.images import FaceAgingError


@pytest.mark.parametrize(
    ("age", "label"),
    [
        (-1, "0-18"),
        (0, "0-18"),
        (18, "0-18"),
        (19, "19-29"),
        (29.5, "30-39"),
        (49, "40-49"),
        (59, "50-59"),
        (60, "60+"),
    ],
)
def test_age_groups_follow_the_six_bands(age, label):
    assert AgeGroup.from_age(age).label == label


def test_group_labels_round_trip():
    assert [AgeGroup.from_label(label) for label in GROUP_LABELS] == list(AgeGroup)
    with pytest.raises(ValueError, match="unknown age group"):
        AgeGroup.from_label("70-79")


@pytest.mark.parametrize(
    ("given", "group"),
    [
        ("60+", AgeGroup.SENIOR),
        (" 0-18 ", AgeGroup.CHILD),
        (2, AgeGroup.THIRTIES),
        ("3", AgeGroup.FORTIES),
        (AgeGroup.FIFTIES, AgeGroup.FIFTIES),
        (None, None),
        ("auto", None),
        ("", None),
    ],
)
def test_a_group_the_user_gives_is_read_as_label_index_or_not_given(given, group):
    assert AgeGroup.parse(given) is group


@pytest.mark.parametrize("given", ["70+", "6", -1, "old", 2.5])
def test_an_unknown_group_is_a_sentence_naming_the_groups(given):
    with pytest.raises(FaceAgingError, match="choose one of 0-18, 19-29"):
        AgeGroup.parse(given)


def test_an_age_position_is_a_group_label_or_a_number_on_the_axis():
    assert AgeGroup.position("60+") == 5.0 and AgeGroup.position("2.5") == 2.5 and AgeGroup.position(0) == 0.0
    for wrong in ("5.5", "-1", "sixty", "nan"):
        with pytest.raises(FaceAgingError, match="a position from 0 to 5"):
            AgeGroup.position(wrong)


def test_age_condition_blends_neighbouring_groups():
    one_hot = age_condition(3.0)
    assert one_hot.tolist() == [[0, 0, 0, 1, 0, 0]]
    blend = age_condition(torch.tensor([1.25, 5.0]))
    assert torch.allclose(blend[0], torch.tensor([0, 0.75, 0.25, 0, 0, 0]))
    assert blend[1].tolist() == [0, 0, 0, 0, 0, 1]
    assert torch.allclose(age_condition(torch.linspace(0, 5, 11)).sum(1), torch.ones(11))


def test_similarity_transform_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity_transform(src, src @ rot.T + shift)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], shift)


def test_align_face_puts_landmarks_on_the_template():
    image = np.zeros((300, 400, 3), np.uint8)
    landmarks = canonical_landmarks(CROP_SIZE) * 1.5 + [50, 20]
    crop, matrix = align_face(image, landmarks)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(mapped, canonical_landmarks(CROP_SIZE), atol=1e-6)


def test_warp_to_downscales_large_faces_without_aliasing():
    # A fine checkerboard must average to grey when shrunk 8x, not alias into stripes.
    board = (np.indices((1024, 1024)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.stack([board] * 3, -1)
    crop = warp_to(image, np.array([[0.125, 0, 0], [0, 0.125, 0]]), 128)
    assert abs(float(crop.mean()) - 127.5) < 3 and crop.std() < 10


def test_differentiable_chip_warp_matches_opencv():
    rng = np.random.default_rng(1)
    crop = (rng.uniform(0, 255, (CROP_SIZE, CROP_SIZE, 3))).astype(np.uint8)
    crop = np.asarray(__import__("cv2").GaussianBlur(crop, (0, 0), 3))
    template = canonical_landmarks(150) * 0.9 + 8  # some other chip geometry
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float().requires_grad_(True)
    chip = chip_from_crop(x, template, 150)
    reference = warp_to(crop, similarity_transform(canonical_landmarks(CROP_SIZE), template), 150)
    inner = (slice(10, 140), slice(10, 140))
    diff = np.abs(chip[0].permute(1, 2, 0).detach().numpy()[inner] - reference[inner].astype(np.float32))
    assert diff.mean() < 1.0
    chip.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
