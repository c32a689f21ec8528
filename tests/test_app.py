"""The app as API users meet it: gradio_client against a live `python app.py`."""

import pytest
from app_server import AppServer
from conftest import EXAMPLES, ROOT

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    (ROOT / "artifacts").mkdir(exist_ok=True)
    with AppServer() as app:
        yield app


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.url, verbose=False)


def test_named_endpoints_are_published(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/age_all", "/age_to"} <= set(endpoints)


def test_age_all_returns_six_captioned_images(client):
    gallery, status, gif, _face = client.predict(
        gradio_client.handle_file(str(EXAMPLES / "luciano_codait_cc0.png")), "Whole photo", api_name="/age_all"
    )
    assert [item["caption"] for item in gallery] == ["0-18", "19-29", "30-39", "40-49", "50-59", "60+"]
    assert all(item["image"].endswith(".png") for item in gallery)
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
