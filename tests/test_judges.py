"""The judges: dlib's identity network in PyTorch (parity with dlib itself) and the dlib age judge."""

import numpy as np
import pytest
import torch
from conftest import EXAMPLE_PHOTOS, UTKFACE, needs_shared, rgb

from faceaging.ages import AgeGroup
from faceaging.dlib_format import DlibFormatError, DlibReader, read_dnn
from faceaging.identity import SAME_PERSON_THRESHOLD, distance

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def dlib_models():
    from faceaging.convert import dlib_recognition_model, dlib_shape_predictor

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(dlib_shape_predictor())),
        dlib.face_recognition_model_v1(str(dlib_recognition_model())),
    )


def _parity_photos():
    photos = [p for p in EXAMPLE_PHOTOS]
    if UTKFACE.is_dir():
        from faceaging.evaluation.judges import heldout_utkface

        photos += heldout_utkface(UTKFACE, 12)
    return photos


@pytest.mark.parametrize("path", _parity_photos(), ids=lambda p: p.name[:40])
def test_identity_net_matches_dlib_on_real_chips(path, dlib_models, identity_net):
    detector, predictor, recogniser = dlib_models
    image = rgb(path)
    # dlib's HOG detector misses some tight UTKFace crops; those crops are the face itself.
    rects = detector(image, 1) or [dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1)]
    for rect in rects:
        chip = dlib.get_face_chip(image, predictor(image, rect), 150, 0.25)
        reference = np.array(recogniser.compute_face_descriptor(chip))
        with torch.inference_mode():
            ours = identity_net(torch.from_numpy(chip).permute(2, 0, 1)[None].float() / 255)[0].numpy()
        cosine = ours @ reference / np.linalg.norm(ours) / np.linalg.norm(reference)
        assert cosine >= 0.9999
        assert np.abs(ours - reference).max() <= 1e-3


def test_gradients_flow_from_embedding_to_pixels(identity_net):
    crops = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_(True)
    embedding = identity_net.embed_crops(crops)
    distance(embedding[0], embedding[1]).backward()
    assert crops.grad is not None and crops.grad.abs().sum() > 0


def test_mtcnn_path_recognises_the_same_person_as_dlib(dlib_models, identity_net, detector):
    """faceaging's own path (MTCNN -> canonical crop -> warp to chip) against dlib's full pipeline."""
    from faceaging.align import align_face

    det, predictor, recogniser = dlib_models
    for path in EXAMPLE_PHOTOS:
        image = rgb(path)
        if len(det(image, 1)) != 1:
            continue  # the group photo: pairing faces across detectors is not what this checks
        chip = dlib.get_face_chip(image, predictor(image, det(image, 1)[0]), 150, 0.25)
        reference = torch.tensor(recogniser.compute_face_descriptor(chip), dtype=torch.float32)
        crop, _ = align_face(image, detector.detect(image)[0].landmarks)
        with torch.inference_mode():
            ours = identity_net.embed_crops(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1)[0]
        assert float(distance(ours, reference)) < SAME_PERSON_THRESHOLD / 2


def test_dlib_reader_decodes_integers_floats_and_strings():
    # 300 = 0x012c (2 bytes), -5 (negative flag), 0.6 as mantissa 0x99999a * 2^-24, "con_4"
    data = bytes([0x02, 0x2C, 0x01, 0x81, 0x05, 0x03, 0x9A, 0x99, 0x99, 0x81, 0x18, 0x01, 0x05]) + b"con_4"
    reader = DlibReader(data)
    assert reader.int() == 300
    assert reader.int() == -5
    assert reader.float() == pytest.approx(0.6, abs=1e-7)
    assert reader.string() == "con_4"
    with pytest.raises(DlibFormatError):
        reader.int()


def test_dlib_reader_rejects_files_that_are_not_networks(tmp_path):
    bogus = tmp_path / "model.dat"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(DlibFormatError, match="does not look like a dlib DNN"):
        read_dnn(bogus)


def test_missing_identity_weights_name_the_command_that_makes_them(tmp_path):
    from faceaging.weights import WeightsError, load_identity

    with pytest.raises(WeightsError, match="python -m faceaging convert-judges"):
        load_identity(tmp_path)


@pytest.fixture(scope="module")
def age_estimator():
    from faceaging.evaluation.age_judge import AgeEstimator

    return AgeEstimator()


def test_age_judge_sees_grace_hopper_as_old_and_eileen_collins_as_middle_aged(age_estimator, detector):
    hopper = rgb(next(p for p in EXAMPLE_PHOTOS if "hopper" in p.name))  # 77 in 1984
    collins = rgb(next(p for p in EXAMPLE_PHOTOS if "collins" in p.name))  # about 40
    old = age_estimator.estimate(hopper, detector.detect(hopper)[0].landmarks)
    middle = age_estimator.estimate(collins, detector.detect(collins)[0].landmarks)
    assert old.group >= AgeGroup.FIFTIES and old.years > middle.years
    assert 20 <= middle.years <= 55


def test_judge_reference_on_real_faces_is_reported_per_group_and_averaged_over_groups(age_estimator, detector):
    from faceaging.align import align_face
    from faceaging.evaluation.evaluate import judge_on_real_faces

    photos = [rgb(next(p for p in EXAMPLE_PHOTOS if name in p.name)) for name in ("hopper", "collins")]
    crops = np.stack([align_face(im, detector.detect(im)[0].landmarks)[0] for im in photos])
    reference = judge_on_real_faces(age_estimator, crops, np.array([77.0, 42.0]))
    groups = reference["groups"]
    assert set(groups) == {"60+", "40-49"} and reference["faces"] == 2
    assert groups["60+"]["mean_estimated_age"] > groups["40-49"]["mean_estimated_age"]
    balanced = np.mean([groups["60+"]["in_group"], groups["40-49"]["in_group"]])
    assert reference["group_balanced_accuracy"] == pytest.approx(balanced)
    assert reference["judge_group_accuracy"] == pytest.approx(balanced)  # one face per group


@needs_shared
def test_age_judge_error_on_held_out_utkface(age_estimator):
    from faceaging.detect import FaceDetector
    from faceaging.evaluation.judges import heldout_utkface
    from faceaging.training.data import detect_centre_face, utkface_age

    paths = heldout_utkface(UTKFACE, 40)
    images = [rgb(p) for p in paths]
    landmarks = detect_centre_face(FaceDetector(min_face_size=60), images)
    errors = [
        abs(age_estimator.estimate(im, lm).years - utkface_age(p.name))
        for p, im, lm in zip(paths, images, landmarks, strict=True)
        if lm is not None
    ]
    assert len(errors) >= 35
    assert np.mean(errors) < 12  # the full slice measures about 6 (python -m faceaging check-judges)
