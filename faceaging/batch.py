"""Age many photos: files, folders and glob patterns, with N worker processes that resume.

`python -m faceaging age DIR_OR_GLOB ... --out OUT --workers N`. Each worker loads the models
once and ages one photo at a time; the parent is the only writer of `OUT/manifest.jsonl`, one
JSON line per photo written after that photo's outputs are saved (or with the sentence that says
why it could not be aged). A second run over the same OUT skips every photo the manifest holds,
so an interrupted run goes on where it stopped, and a bad file is listed once, never fatal.
Memory stays bounded whatever the folder's size: photos go out one at a time and only their
summaries come back.
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .images import is_photo

MANIFEST = "manifest.jsonl"


def find_photos(specs: list[str]) -> list[tuple[Path, Path]]:
    """(photo, its output folder relative to OUT) for files, folders (their photos, recursively)
    and glob patterns, in the order given, each photo once. A spec that matches nothing stays, so
    that it is reported."""
    found: dict[Path, Path] = {}
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            for photo in sorted(p for p in path.rglob("*") if is_photo(p)):
                found.setdefault(photo, photo.relative_to(path))
        elif path.exists() or not glob.has_magic(spec):
            found.setdefault(path, Path(path.name))
        else:
            for match in sorted(glob.glob(spec, recursive=True)):
                if Path(match).is_file():
                    found.setdefault(Path(match), Path(Path(match).name))
    # Two photos of the same name from different places must not share a folder.
    taken: set[Path] = set()
    for photo, folder in found.items():
        unique, n = folder, 1
        while unique in taken:
            n += 1
            unique = folder.with_name(f"{folder.name}~{n}")
        taken.add(unique)
        found[photo] = unique
    return list(found.items())


def read_manifest(path: Path) -> set[str]:
    """The photos an earlier run finished (aged or refused); a line cut short by an interruption
    does not count."""
    done = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                done.add(json.loads(line)["photo"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


def save_result(result, out: Path) -> None:
    """Everything `age` writes for one photo into `out`."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for group, photo in result.photos.items():
        Image.fromarray(photo).save(out / f"{group.label}.png")
    for i in range(len(result.faces)):
        # Aligned crops cut from the whole photos, at the face's own resolution (up to 512 px).
        folder = out / f"face_{i + 1}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(result.aligned(i, result.photo)).save(folder / "input.png")
        for group, photo in result.photos.items():
            Image.fromarray(result.aligned(i, photo)).save(folder / f"{group.label}.png")
    Image.fromarray(result.grid()).save(out / "grid.png")
    (out / "aging.gif").write_bytes(result.gif())


_worker: dict = {}


def _start_worker(weights: str, device: str, steps: int, threads: int, source_group: str | None = None) -> None:
    import cv2
    import torch

    from .ager import FaceAger

    # Workers share the cores: N processes of `threads` threads each, not N x cores threads.
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    started = time.perf_counter()
    _worker["ager"] = FaceAger.from_pretrained(weights, device=device, steps=steps)
    _worker["load_seconds"] = time.perf_counter() - started
    _worker["source_group"] = source_group


def _age_one(task: tuple[str, str]) -> dict:
    from .images import FaceAgingError

    photo, out = task
    ager = _worker["ager"]
    try:
        result = ager.age(photo, source_group=_worker["source_group"])
    except FaceAgingError as err:
        return {"photo": photo, "error": str(err)}
    save_result(result, Path(out))
    return {
        "photo": photo,
        "out": out,
        "faces": len(result.faces),
        "skipped_faces": result.skipped_faces,
        "source_groups": [f.source_group.label for f in result.faces],
        "estimated_groups": [f.estimated_group.label for f in result.faces],
        "identity_distances": [round(f.identity_distance, 3) for f in result.faces],
        "seconds": {
            "load_models": round(_worker["load_seconds"], 3),
            **{k: round(v, 3) for k, v in result.timings.items()},
        },
    }


def age_photos(
    photos: list[tuple[Path, Path]],
    out: Path,
    weights: str,
    workers: int = 1,
    device: str = "auto",
    steps: int = 10,
    source_group: str | None = None,
) -> Iterator[dict]:
    """Age every photo the manifest in `out` does not hold yet, yielding each one's summary (with
    "error" for a photo that could not be aged) once its line is in the manifest. `weights` is a
    resolved folder; a single photo's outputs go into `out` itself. `source_group`: the group the
    people in the photos say they are in (see `FaceAger.age`)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    done = read_manifest(manifest)
    single = len(photos) == 1
    tasks = [(str(photo), str(out if single else out / folder)) for photo, folder in photos if str(photo) not in done]
    if not tasks:
        return
    workers = max(1, min(workers, len(tasks)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    with manifest.open("a") as lines:
        if workers == 1:
            _start_worker(weights, device, steps, threads, source_group)
            summaries = map(_age_one, tasks)
            pool = None
        else:
            # spawn: a fresh interpreter per worker, never a fork of a process that holds torch threads
            pool = multiprocessing.get_context("spawn").Pool(workers, _start_worker, (weights, device, steps, threads))
            summaries = pool.imap_unordered(_age_one, tasks)
        try:
            for summary in summaries:
                lines.write(json.dumps(summary) + "\n")
                lines.flush()
                yield summary
        finally:
            if pool is not None:
                pool.terminate()
