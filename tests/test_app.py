"""The app as API users meet it: gradio_client against a live `python app.py`."""

import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import EXAMPLES

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow


def test_named_endpoints_are_published(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/age_all", "/age_to", "/age_video", "/age_live"} <= set(endpoints)


def test_age_all_returns_six_captioned_images(client):
    gallery, status, gif, _face = client.predict(
        gradio_client.handle_file(str(EXAMPLES / "luciano_codait_cc0.png")), "Whole photo", api_name="/age_all"
    )
    assert [item["caption"] for item in gallery] == ["0-18", "19-29", "30-39", "40-49", "50-59", "60+"]
    assert all(item["image"].endswith(".jpeg") for item in gallery)
    assert "Estimated current age group" in status
    assert gif.endswith(".gif")


def test_age_to_returns_one_image(client):
    image = client.predict(
        gradio_client.handle_file(str(EXAMPLES / "eileen_collins_nasa_portrait.png")), 4.5, api_name="/age_to"
    )
    assert image.endswith(".png")


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [(b"just some text", ".jpg", "not an image"), (None, ".png", "No face found")],
    ids=["text file", "no face"],
)
def test_bad_input_is_an_app_error_with_a_sentence_and_the_server_carries_on(
    client, tmp_path, content, suffix, message
):
    path = tmp_path / f"input{suffix}"
    if content is None:
        from PIL import Image

        Image.new("RGB", (320, 240), (90, 140, 200)).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(gradio_client.exceptions.AppError, match=message) as err:
        client.predict(gradio_client.handle_file(str(path)), "Whole photo", api_name="/age_all")
    assert "Traceback" not in str(err.value)
    gallery, *_ = client.predict(
        gradio_client.handle_file(str(EXAMPLES / "grace_hopper_us_navy_portrait_1984.jpg")),
        "Face only",
        api_name="/age_all",
    )
    assert len(gallery) == 6


@pytest.mark.parametrize(
    "route",
    [
        "gradio_api/file=/etc/passwd",
        "file=/etc/passwd",
        "gradio_api/file=../../../../../../etc/passwd",
        "gradio_api/file=%2Fetc%2Fpasswd",
        "gradio_api/file=app.py",
    ],
)
def test_file_route_serves_nothing_outside_gradio_temp_and_examples(live_app, route):
    try:
        with urllib.request.urlopen(live_app.url + route, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    assert status in (400, 403, 404), status
    assert b"root:" not in body and b"import gradio" not in body


def test_file_route_serves_uploads(live_app):
    """The refusals above are not a broken route: a file Gradio itself holds does come back."""
    import httpx

    example = EXAMPLES / "luciano_codait_cc0.png"
    with example.open("rb") as f:
        uploaded = httpx.post(f"{live_app.url}gradio_api/upload", files={"files": f}, timeout=60).json()[0]
    response = httpx.get(f"{live_app.url}gradio_api/file={uploaded}", timeout=60)
    assert response.status_code == 200 and response.content == example.read_bytes()


def test_analytics_are_off(live_app):
    import json

    with urllib.request.urlopen(live_app.url + "config", timeout=30) as response:
        config = json.loads(response.read())
    assert config["analytics_enabled"] is False


def test_uploads_over_the_size_cap_are_refused_and_the_server_carries_on(client, tmp_path):
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(21 * 2**20))
    with pytest.raises(Exception, match="(?i)too large|exceeds|maximum") as err:
        client.predict(gradio_client.handle_file(str(big)), "Whole photo", api_name="/age_all")
    assert "Traceback" not in str(err.value)
    assert client.predict(gradio_client.handle_file(str(EXAMPLES / "luciano_codait_cc0.png")), 1.0, api_name="/age_to")


def test_a_person_can_say_their_own_age_group(client):
    """Told 60+, the app ages from 60+ (so 60+ is the photo itself) and still shows its estimate."""
    from PIL import Image

    from faceaging.images import load_image

    photo = EXAMPLES / "eileen_collins_nasa_portrait.png"
    gallery, status, _gif, _face = client.predict(
        gradio_client.handle_file(str(photo)), "Whole photo", "60+", api_name="/age_all"
    )
    assert "Estimated current age group" in status and "you gave: **60+**" in status
    image = client.predict(gradio_client.handle_file(str(photo)), 5.0, "60+", api_name="/age_to")
    assert (np.asarray(Image.open(image).convert("RGB")) == load_image(photo)).all()


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory, detector):
    from conftest import rgb

    from faceaging.evaluation.live import make_clip, write_mp4

    selfie = rgb(EXAMPLES / "luciano_codait_cc0.png")
    clip = make_clip(selfie, detector.detect(selfie)[0].box, 20, moving=True)
    return write_mp4(clip, tmp_path_factory.mktemp("clip") / "clip.mp4", rate=10)


def test_a_video_is_aged_through_the_api(client, short_clip):
    import av

    result = client.predict(gradio_client.handle_file(str(short_clip)), 5.0, "auto", api_name="/age_video")
    with av.open(result) as aged:
        assert sum(1 for _ in aged.decode(video=0)) == 20
        assert [s.codec_context.name for s in aged.streams.audio] == ["aac"]


def test_a_bad_video_is_an_app_error_with_a_sentence(client, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 and then nothing")
    with pytest.raises(gradio_client.exceptions.AppError, match="could not be read as a video") as err:
        client.predict(gradio_client.handle_file(str(bad)), 5.0, "auto", api_name="/age_video")
    assert "Traceback" not in str(err.value)
