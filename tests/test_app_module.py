"""app.py's own housekeeping, in-process: what it imports before serving, and its GIF files."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT


def test_the_page_is_built_without_torch():
    # app.py serves its page while torch and the models load beside it; its up-front imports must not pull torch in.
    code = "import sys, faceaging.ages, faceaging.images, faceaging.memory; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_only_the_latest_gifs_stay_on_disk(ager, monkeypatch):
    import app

    monkeypatch.setattr(app, "KEEP_GIFS", 2)
    result = ager.age(EXAMPLES / "luciano_codait_cc0.png", steps=0)
    paths = [Path(app.animate(result)) for _ in range(4)]
    assert all(p.name == "aging.gif" for p in paths)
    assert [p.exists() for p in paths] == [False, False, True, True]
    assert len(list(Path(app.GIF_FOLDER.name).iterdir())) == 2


def test_a_model_that_failed_to_load_is_explained_to_the_user(monkeypatch):
    from concurrent.futures import Future

    import gradio as gr

    import app
    from faceaging import WeightsError

    failed = Future()
    failed.set_exception(WeightsError("No aging weights at 'nobody/nothing'."))
    monkeypatch.setattr(app, "_models", failed)
    with pytest.raises(gr.Error, match="could not be loaded .*nobody/nothing"):
        app.age_to(str(EXAMPLES / "luciano_codait_cc0.png"), 2.0)


def test_the_face_view_shows_crops_cut_from_the_aged_photos(ager, monkeypatch):
    """The face view and its slider show the face at the photo's own resolution, not the model's
    128 px crop: the crops are cut from the same whole photos the photo view shows."""
    from concurrent.futures import Future

    import app
    from faceaging import AgeGroup

    ready = Future()
    ready.set_result(ager)
    monkeypatch.setattr(app, "_models", ready)
    result = ager.age(EXAMPLES / "eileen_collins_nasa_portrait.png", steps=0)
    pictures = app._pictures(result, app.FACE, 0)
    side = result.faces[0].crop_side
    assert [p.shape for p in pictures] == [(side, side, 3)] * 6
    assert (pictures[-1] == result.aligned(0, result.photos[AgeGroup.SENIOR])).all()
    assert app.show_age(result, 4.5, app.FACE, None).shape == (side, side, 3)
