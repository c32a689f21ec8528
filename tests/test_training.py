"""Data preparation, a tiny training run with resume, and export to loadable safetensors."""

import numpy as np
import pytest
import torch
from conftest import EXAMPLE_PHOTOS, rgb
from PIL import Image

from faceaging.ages import NUM_GROUPS
from faceaging.training.data import (
    AgedFaces,
    FaceSet,
    build_utkface,
    build_wiki,
    is_heldout,
    read_wiki_mat,
    utkface_age,
)


def test_utkface_names_give_the_age_even_without_the_race_field():
    assert utkface_age("25_0_1_20170116174525125.jpg.chip.jpg") == 25
    assert utkface_age("/x/61_1_20170109142408075.jpg.chip.jpg") == 61


def test_heldout_slice_is_fixed_and_about_one_in_twenty():
    names = [f"{a}_0_0_2017{i:010d}.jpg.chip.jpg" for i, a in enumerate(range(4000))]
    share = np.mean([is_heldout(n) for n in names])
    assert 0.035 < share < 0.065
    assert is_heldout(names[7]) == is_heldout("/elsewhere/" + names[7])


def test_build_utkface_aligns_every_face_with_mtcnn(utk_dir, tmp_path):
    faces = build_utkface(utk_dir)
    assert faces.images.shape == (6, 128, 128, 3) and faces.images.dtype == np.uint8
    assert sorted(faces.ages.tolist()) == [8, 24, 35, 44, 55, 70]
    assert faces.groups.tolist() == [int(g) for g in faces.groups]
    faces.save(tmp_path / "cache.npz")
    again = FaceSet.load(tmp_path / "cache.npz")
    assert np.array_equal(again.images, faces.images) and again.names == faces.names


def test_read_wiki_mat_computes_ages_like_the_book(tmp_path):
    from scipy.io import savemat

    # dob as MATLAB datenums: 1950-06-01 = 712560, 1990-01-01 = 726834; one with no face, one with two.
    records = np.zeros(
        (1, 1), dtype=[(k, "O") for k in ("dob", "photo_taken", "full_path", "face_score", "second_face_score")]
    )
    records[0, 0] = (
        np.array([[712560, 726834, 726834, 726834]]),
        np.array([[2010, 2015, 2015, 2015]]),
        np.array([["17/a.jpg", "18/b.jpg", "19/c.jpg", "20/d.jpg"]], dtype=object),
        np.array([[3.2, 4.1, -np.inf, 2.0]]),
        np.array([[np.nan, np.nan, np.nan, 1.5]]),
    )
    savemat(tmp_path / "wiki.mat", {"wiki": records})
    assert read_wiki_mat(tmp_path / "wiki.mat") == [("17/a.jpg", 60.0), ("18/b.jpg", 25.0)]


def test_build_wiki_aligns_faces_from_the_mat_file(tmp_path):
    from scipy.io import savemat

    (tmp_path / "00").mkdir()
    Image.fromarray(rgb(EXAMPLE_PHOTOS[1])).save(tmp_path / "00" / "face.jpg")
    records = np.zeros(
        (1, 1), dtype=[(k, "O") for k in ("dob", "photo_taken", "full_path", "face_score", "second_face_score")]
    )
    records[0, 0] = ([[712560]], [[2010]], np.array([["00/face.jpg"]], dtype=object), [[3.0]], [[np.nan]])
    savemat(tmp_path / "wiki.mat", {"wiki": records})
    faces = build_wiki(tmp_path)
    assert faces.images.shape == (1, 128, 128, 3) and faces.ages.tolist() == [60.0]


def test_balanced_sampler_draws_groups_evenly():
    groups = np.array([0] * 90 + [1] * 5 + [2] * 2 + [3] * 1 + [4] * 1 + [5] * 1)
    ages = np.array([5, 25, 35, 45, 55, 70])[groups].astype(np.float32)
    faces = FaceSet(np.zeros((100, 8, 8, 3), np.uint8), ages, [f"{i}" for i in range(100)])
    data = AgedFaces(faces)
    drawn = data.groups[list(data.balanced_sampler(6000, torch.Generator().manual_seed(0)))]
    counts = torch.bincount(drawn, minlength=NUM_GROUPS).float() / 6000
    assert torch.all((counts - 1 / 6).abs() < 0.03)


def test_tiny_training_run_checkpoints_resumes_and_exports(utk_dir, tmp_path):
    from faceaging.training.train import (
        EXPORT_PRIOR_GAINS,
        TrainConfig,
        export_weights,
        train,
        train_age_probe,
    )
    from faceaging.weights import AGING_FILES, BUNDLED_WEIGHTS, IDENTITY_FILE, load_aging_models

    faces = build_utkface(utk_dir)
    config = TrainConfig(
        steps=2,
        batch_size=2,
        sample_every=1,
        checkpoint_every=1,
        identity_faces=1,
        adversarial_from=1,  # both phases run
    )
    run = tmp_path / "run"
    first = train(faces, run, config, device="cpu")
    assert first.step == 2 and (run / "checkpoint.pt").exists()
    assert (run / "samples" / "step_000002.png").exists()
    grid = Image.open(run / "samples" / "step_000002.png")
    assert grid.width > grid.height  # columns: input + six ages
    assert any((run / "tensorboard").iterdir())

    config.steps = 3
    resumed = train(faces, run, config, device="cpu", resume=True)
    assert resumed.step == 3
    weights = tmp_path / "weights"
    with pytest.raises(ValueError, match="train-probe"):  # the probe is fitted after training
        export_weights(run / "checkpoint.pt", weights)
    train_age_probe(faces, run, steps=2)
    probe_state = torch.load(run / "checkpoint.pt", weights_only=True)["age_probe"]
    assert probe_state["std"].min() > 0 and probe_state["linear.weight"].abs().sum() > 0
    export_weights(run / "checkpoint.pt", weights)
    (weights / IDENTITY_FILE).symlink_to(BUNDLED_WEIGHTS / IDENTITY_FILE)
    encoder, generator, probe = load_aging_models(weights)
    assert all((weights / f).stat().st_size > 0 for f in AGING_FILES)
    with torch.inference_mode():
        x = torch.zeros(1, 3, 128, 128)
        z = encoder(x)
        assert generator(x, z, torch.eye(6)[:1], torch.eye(6)[5:]).shape == (1, 3, 128, 128)
        # The prototype prior was measured from the training faces and ships inside the generator.
        assert generator.prior.log_amplitude.abs().sum() > 0
        assert generator.prior.gains.tolist() == pytest.approx(EXPORT_PRIOR_GAINS, abs=1e-3)  # fp16
        assert probe(torch.zeros(2, 256)).shape == (2, 6)


def test_soft_group_labels_put_most_mass_on_the_labelled_group_and_share_it_at_a_boundary():
    from faceaging.training.train import group_soft_labels

    labels = group_soft_labels(np.array([5.0, 24.0, 45.0, 80.0, 29.0]))
    assert torch.allclose(labels.sum(1), torch.ones(5))
    assert labels[:4].argmax(1).tolist() == [0, 1, 3, 5]
    assert labels[0, 0] > 0.99 and labels[3, 5] > 0.99  # far from any boundary
    assert 0.3 < labels[4, 2] < labels[4, 1]  # 29: mostly 19-29, much of it 30-39
