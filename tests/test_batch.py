"""Batch aging: a folder with worker processes, interrupted and resumed, bad files listed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import EXAMPLES, ROOT

from faceaging.batch import find_photos, read_manifest


def _folder(tmp_path):
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    for i in range(3):
        shutil.copy(EXAMPLES / "luciano_codait_cc0.png", photos / f"selfie_{i}.png")
    # the same name in another folder
    shutil.copy(EXAMPLES / "eileen_collins_nasa_portrait.png", photos / "more" / "selfie_0.png")
    (photos / "notes.jpg").write_text("not a photo")
    (photos / "readme.txt").write_text("not a photo either, and not a photo's name")
    return photos


def test_folders_and_globs_are_expanded_once_each_with_their_own_output_folder(tmp_path):
    photos = _folder(tmp_path)
    found = find_photos([str(photos), str(photos / "selfie_*.png")])
    assert [p.name for p, _ in found].count("selfie_1.png") == 1  # the glob repeats the folder's photos
    assert len(found) == 5  # four photos and the bad .jpg; the .txt is not a photo's name
    assert len({folder for _, folder in found}) == 5


def _run(args, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "faceaging", "age", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_an_interrupted_batch_resumes_and_ages_every_photo_exactly_once(tmp_path):
    photos, out = _folder(tmp_path), tmp_path / "out"
    manifest = out / "manifest.jsonl"
    args = [str(photos), "--out", str(out), "--workers", "2", "--steps", "0"]
    first = _run(args, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(read_manifest(manifest)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the whole run, workers included, as a closed terminal would
    first.wait()
    before = read_manifest(manifest)
    assert 2 <= len(before) < 5, "the run was not interrupted part way"

    second = _run(args)
    stdout, stderr = second.communicate(timeout=600)
    assert "Traceback" not in stderr
    lines = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    done = [line["photo"] for line in lines]
    assert sorted(done) == sorted(str(p) for p, _ in find_photos([str(photos)]))  # every photo exactly once
    aged_now = [json.loads(line)["photo"] for line in stdout.splitlines()]
    assert not set(aged_now) & before  # nothing the first run finished was aged again
    bad = [line for line in lines if "error" in line]
    assert [b["photo"] for b in bad] == [str(photos / "notes.jpg")] and "not an image" in bad[0]["error"]
    for line in lines:
        if "error" not in line:
            folder = Path(line["out"])
            assert (folder / "60+.png").is_file() and (folder / "aging.gif").is_file()
    assert (out / "more" / "selfie_0.png" / "face_1" / "60+.png").is_file()
    assert second.returncode == (2 if str(photos / "notes.jpg") not in before else 0)
