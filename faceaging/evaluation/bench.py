"""`python -m faceaging bench`: time every stage on the example photos and report medians.

Figures, not assertions: the targets (1 s per single-face photo, 100 ms per slider move, 5 s cold
start) are read off this table, never enforced by timed unit tests.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from ..ager import FaceAger
from ..images import load_image

STAGES = ("load", "detect", "align", "encode", "optimize", "region", "render", "paste")
# The slider's 0.1 steps that fall between groups: those go through the generator (whole groups are cached).
SLIDER_POSITIONS = [step / 10 for step in range(51) if step % 10]
SERVED_EXAMPLE = "luciano_codait_cc0.png"  # a single-face selfie, the common case


def _median_ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 1) if values else float("nan")


def _time_photo(ager: FaceAger, photo, runs: int, steps: int | None) -> dict[str, list[float]]:
    """Stage timings over `runs` calls after one warm-up call; `end_to_end` is the whole age()."""
    ager.age(photo, steps=steps)  # warm-up: first calls allocate and pick kernels
    samples: dict[str, list[float]] = {name: [] for name in (*STAGES, "end_to_end", "gif")}
    for _ in range(runs):
        started = time.perf_counter()
        result = ager.age(photo, steps=steps)
        samples["end_to_end"].append(time.perf_counter() - started)
        for stage in STAGES:
            samples[stage].append(result.timings.get(stage, 0.0))
        started = time.perf_counter()
        result.gif()
        samples["gif"].append(time.perf_counter() - started)
    samples["faces"] = [len(result.faces)]
    return samples


def _time_slider(ager: FaceAger, photo) -> list[float]:
    result = ager.age(photo)
    times = []
    for position in SLIDER_POSITIONS:
        started = time.perf_counter()
        result.render_at(position)
        times.append(time.perf_counter() - started)
    return times


def cold_start(served_runs: int = 3) -> dict[str, float]:
    """Seconds from `python app.py` to the first page served and to the first aged photo served;
    then the median of `served_runs` more /age_all calls (six photos and the GIF, as the page gets
    them), which adds Gradio's encoding and the HTTP round trips to the pipeline's own time."""
    from gradio_client import Client, handle_file

    from .app_process import REPO, AppProcess

    example = handle_file(str(REPO / "examples" / SERVED_EXAMPLE))
    started = time.perf_counter()
    with AppProcess() as app:
        client = Client(app.url, verbose=False)
        client.predict(example, 3.0, api_name="/age_to")
        first_request = time.perf_counter() - started
        served = []
        for _ in range(served_runs):
            started = time.perf_counter()
            client.predict(example, "Whole photo", api_name="/age_all")
            served.append(time.perf_counter() - started)
        return {
            "server_ready_s": round(app.ready_seconds, 2),
            "first_request_s": round(first_request, 2),
            "served_age_all_s": round(statistics.median(served), 2),
        }


def bench(photos: list[Path], runs: int = 5, with_cold_start: bool = True) -> dict:
    started = time.perf_counter()
    ager = FaceAger.from_pretrained(device="auto")
    load_seconds = time.perf_counter() - started
    report: dict = {
        "environment": {
            "device": str(ager.device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "identity_steps": ager.steps,
        },
        "runs": runs,
        "model_load_s": round(load_seconds, 2),
        "photos": {},
    }
    for path in photos:
        photo = load_image(path)
        with_opt = _time_photo(ager, photo, runs, steps=None)
        z0_only = _time_photo(ager, photo, runs, steps=0)
        faces = with_opt["faces"][0]
        e2e = statistics.median(with_opt["end_to_end"])
        report["photos"][path.name] = {
            "faces": faces,
            "stages_ms": {stage: _median_ms(with_opt[stage]) for stage in (*STAGES, "gif")},
            "end_to_end_ms": round(1000 * e2e, 1),
            "per_face_ms": round(1000 * e2e / max(faces, 1), 1),
            "z0_only_end_to_end_ms": _median_ms(z0_only["end_to_end"]),
            "optimisation_ratio": round(e2e / statistics.median(z0_only["end_to_end"]), 2),
            "slider_ms": _median_ms(_time_slider(ager, photo)),
        }
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if with_cold_start:
        report["cold_start"] = cold_start(served_runs=runs)
    return report


def markdown_table(report: dict) -> str:
    env = report["environment"]
    names = list(report["photos"])
    lines = [
        f"device {env['device']}, torch {env['torch']}, {env['threads']} threads, {env['cpu_count']} CPUs; "
        f"medians of {report['runs']} runs after a warm-up; identity optimisation: up to {env['identity_steps']} steps",
        "",
        "| stage (ms) | " + " | ".join(f"{n} ({report['photos'][n]['faces']} face)" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    rows = [(s, lambda p, s=s: p["stages_ms"][s]) for s in (*STAGES, "gif")] + [
        ("**end to end** (no GIF)", lambda p: p["end_to_end_ms"]),
        ("end to end per face", lambda p: p["per_face_ms"]),
        ("z0 only, end to end", lambda p: p["z0_only_end_to_end_ms"]),
        ("ratio optimised / z0 only", lambda p: p["optimisation_ratio"]),
        ("slider move between groups (render + paste)", lambda p: p["slider_ms"]),
    ]
    for label, value in rows:
        lines.append(f"| {label} | " + " | ".join(str(value(report["photos"][n])) for n in names) + " |")
    lines += ["", f"model load {report['model_load_s']} s; peak RSS {report['peak_rss_mb']} MB"]
    if "cold_start" in report:
        cold = report["cold_start"]
        lines.append(
            f"cold start (`python app.py`): page served after {cold['server_ready_s']} s, "
            f"first aged photo after {cold['first_request_s']} s; then /age_all (six photos + GIF) "
            f"served in {cold['served_age_all_s']} s (median)"
        )
    return "\n".join(lines)


def make_batch_folder(examples: list[Path], folder: Path, count: int) -> list[Path]:
    """`count` photos derived from the examples (mirrored, scaled, lighter or darker), as a user's
    archive would hold many different photos of a few people."""
    from PIL import Image, ImageEnhance, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        image = Image.open(examples[i % len(examples)]).convert("RGB")
        variant = i // len(examples)
        if variant % 2:
            image = ImageOps.mirror(image)
        scale = (0.8, 1.0, 1.25)[variant % 3]
        image = image.resize((round(image.width * scale), round(image.height * scale)))
        image = ImageEnhance.Brightness(image).enhance(1 + 0.05 * (variant % 5 - 2))
        path = folder / f"photo_{i:03d}.jpg"
        image.save(path, quality=90)
        made.append(path)
    return made


def bench_batch(examples: list[Path], count: int = 40, workers: tuple[int, ...] = (1, 2)) -> dict:
    """Photos per second of `age` over a folder of `count` example-derived photos, per number of
    worker processes; wall clock from start to the last manifest line, model loading included."""
    import tempfile

    from ..batch import age_photos, find_photos
    from ..weights import resolve_weights

    weights = str(resolve_weights())
    report: dict = {"photos": count, "cpu_count": os.cpu_count(), "workers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        make_batch_folder(examples, Path(tmp) / "photos", count)
        photos = find_photos([str(Path(tmp) / "photos")])
        for n in workers:
            started = time.perf_counter()
            summaries = list(age_photos(photos, Path(tmp) / f"out_{n}", weights, workers=n))
            seconds = time.perf_counter() - started
            report["workers"][n] = {
                "seconds": round(seconds, 1),
                "photos_per_second": round(len(summaries) / seconds, 2),
                "failed": sum("error" in s for s in summaries),
            }
    first = report["workers"][workers[0]]["photos_per_second"]
    for n in workers:
        report["workers"][n]["speed_up"] = round(report["workers"][n]["photos_per_second"] / first, 2)
    return report
