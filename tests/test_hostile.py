"""The promise for hostile input: a correct result or a sentence that says what to do, never a
traceback, and the server (or the CLI) carries on. The corpus is generated, never committed."""

import json
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT
from hostile_inputs import AGED, CATALOGUE, make_corpus

from faceaging import FaceAgingError
from faceaging.ager import MAX_FACES

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("name", CATALOGUE)
def test_pipeline_ages_or_explains(ager, corpus, name):
    item = corpus[name]
    if item.expect != AGED:
        with pytest.raises(FaceAgingError, match=f"^{item.expect}"):
            ager.age(item.path, steps=0)
        return
    result = ager.age(item.path, steps=0)
    assert len(result.faces) == item.faces
    assert (result.skipped_faces > 0) == item.skipped
    assert len(result.photos) == 6 and all(p.shape == result.photo.shape for p in result.photos.values())
    assert max(result.photo.shape[:2]) <= 2048  # big photos are worked on at a bounded size


def test_crowd_is_capped_largest_first(ager, corpus):
    result = ager.age(corpus["twenty_faces.jpg"].path, steps=0)
    assert len(result.faces) == MAX_FACES and result.skipped_faces == 20 - MAX_FACES
    sizes = [f.box[2] - f.box[0] for f in result.faces]
    assert sizes == sorted(sizes, reverse=True)


def test_cli_carries_on_past_bad_photos(corpus, tmp_path):
    paths = [str(item.path) for item in corpus.values()]
    proc = subprocess.run(
        [sys.executable, "-m", "faceaging", "age", *paths, "--out", str(tmp_path / "out"), "--steps", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 2  # some photos had no result
    assert "Traceback" not in proc.stderr + proc.stdout
    done = {json.loads(line)["photo"] for line in proc.stdout.splitlines() if line.startswith("{")}
    messages = [line for line in proc.stderr.splitlines() if line.startswith("faceaging: ")]
    for item in corpus.values():
        if item.expect == AGED:
            assert str(item.path) in done
            assert (tmp_path / "out" / item.path.name / "60+.png").exists()
        else:
            assert any(line.startswith(f"faceaging: {item.path}: {item.expect}") for line in messages), item.path


def _served_or_explained(client, name: str, item) -> None:
    if item.expect == AGED:
        gallery, status, gif, _picker = client.predict(
            gradio_client.handle_file(str(item.path)), "Face only", api_name="/age_all"
        )
        assert len(gallery) == 6 and gif.endswith(".gif"), name
        assert ("skipped" in status) == item.skipped, name
        return
    with pytest.raises(gradio_client.exceptions.AppError) as err:
        client.predict(gradio_client.handle_file(str(item.path)), "Whole photo", api_name="/age_all")
    assert str(err.value).startswith(item.expect) or item.expect in str(err.value), (name, str(err.value))
    assert "Traceback" not in str(err.value)
    # The next request is served normally.
    image = client.predict(gradio_client.handle_file(str(EXAMPLES / "luciano_codait_cc0.png")), 2.0, api_name="/age_to")
    assert image.endswith(".png"), name


@pytest.mark.slow
def test_live_server_ages_or_explains_and_carries_on(client, live_app, corpus):
    # The server's (current, peak so far) memory in MB after each input, for the README's figures.
    memory = {"start": live_app.rss_mb()}
    for name, item in corpus.items():
        _served_or_explained(client, name, item)
        memory[name] = live_app.rss_mb()
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "hostile_memory.json").write_text(json.dumps(memory, indent=1))
    _current, peak = memory[name]
    assert peak < 1536, f"server peaked at {peak:.0f} MB over the hostile corpus"
