"""Weights from the Hugging Face Hub: real hf_hub_download against a loopback Hub, then offline."""

import json
import os
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT
from hub_server import HubServer

from faceaging.weights import AGING_FILES, BUNDLED_WEIGHTS, IDENTITY_FILE

REPO = "faceaging/faceaging-utkface"


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def hub_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FACEAGING_"))}
    env["HF_HOME"] = str(tmp_path / "hf")
    return env


def test_weights_download_from_the_hub_then_load_offline(hub_env, tmp_path):
    files = {name: (BUNDLED_WEIGHTS / name).read_bytes() for name in (IDENTITY_FILE, *AGING_FILES)}
    resolve = f"from faceaging.weights import resolve_weights; print(resolve_weights({REPO!r}))"
    with HubServer({REPO: files}) as hub:
        online = _python(resolve, {**hub_env, "HF_ENDPOINT": hub.url})
        assert online.returncode == 0, online.stderr
        assert any(r.startswith("GET /" + REPO) for r in hub.requests)
    folder = online.stdout.strip().splitlines()[-1]
    assert folder.startswith(str(tmp_path / "hf"))  # the standard huggingface_hub cache
    for name, data in files.items():
        assert (tmp_path / folder / name).read_bytes() == data

    # The server is gone: with HF_HUB_OFFLINE=1 the cached repo still ages a photo end to end.
    out = tmp_path / "out"
    cli = subprocess.run(
        [sys.executable, "-m", "faceaging", "age", str(EXAMPLES / "luciano_codait_cc0.png"), "--out", str(out)]
        + ["--weights", REPO, "--steps", "1"],
        cwd=ROOT,
        env={**hub_env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout.strip().splitlines()[-1])["faces"] == 1


@pytest.mark.parametrize(
    ("spec", "served"),
    [("nobody/missing", {}), (REPO + "@v9", {REPO: {}}), (REPO, {REPO: {}})],
    ids=["missing repo", "missing revision", "missing file"],
)
def test_unreachable_weights_give_one_clear_message(hub_env, spec, served):
    code = (
        "from faceaging.weights import WeightsError, resolve_weights\n"
        f"try:\n    resolve_weights({spec!r})\nexcept WeightsError as err:\n    print(err)"
    )
    with HubServer(served) as hub:
        result = _python(code, {**hub_env, "HF_ENDPOINT": hub.url})
    assert result.returncode == 0, result.stderr
    assert f"weights {spec!r}" in result.stdout and "Hugging Face Hub" in result.stdout


def test_offline_without_a_cache_says_so(hub_env):
    code = (
        "from faceaging.weights import WeightsError, resolve_weights\n"
        f"try:\n    resolve_weights({REPO!r})\nexcept WeightsError as err:\n    print(err)"
    )
    result = _python(code, {**hub_env, "HF_HUB_OFFLINE": "1"})
    assert f"weights {REPO!r}" in result.stdout


def test_a_spec_that_is_neither_folder_nor_repo_is_refused():
    from faceaging.weights import WeightsError, resolve_weights

    with pytest.raises(WeightsError, match="not a folder, and not a Hub repo"):
        resolve_weights("no such folder/with/too many/parts")


def test_publish_dry_run_lists_the_weights_and_model_card():
    proc = subprocess.run(
        [sys.executable, "-m", "faceaging", "publish", "--repo", REPO, "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in (IDENTITY_FILE, *AGING_FILES, "README.md"):
        assert f"{REPO}/{name}" in proc.stdout
