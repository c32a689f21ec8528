"""`python -m faceaging loadtest`: concurrent gradio_client users against a live `python app.py`.

Every client sends /age_all requests (the whole pipeline plus the GIF) with the example photos in
turn. The report gives failures, latency percentiles and the server's memory after the first 10
requests and at the end, which shows whether memory leaks.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from ..images import photos_in
from .app_process import REPO, AppProcess


def _percentile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2) if len(values) > 1 else values[0]


def load_test(clients: int = 4, requests: int = 50, photos: list[Path] | None = None) -> dict:
    from gradio_client import Client, handle_file

    photos = photos or photos_in(REPO / "examples")
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    rss_after_warmup: list[float] = []

    with AppProcess() as app:
        rss_start = app.rss_mb()[0]

        def user(index: int) -> None:
            client = Client(app.url, verbose=False)
            for i in range(requests):
                photo = photos[(index + i) % len(photos)]
                started = time.perf_counter()
                try:
                    gallery, *_ = client.predict(handle_file(str(photo)), "Whole photo", api_name="/age_all")
                    if len(gallery) != 6:
                        raise RuntimeError(f"{len(gallery)} images instead of 6")
                except Exception as err:  # a load test counts failures rather than stopping at one
                    with lock:
                        failures.append(f"{photo.name}: {type(err).__name__}: {err}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if len(latencies) == 10:
                        rss_after_warmup.append(app.rss_mb()[0])

        started = time.perf_counter()
        threads = [threading.Thread(target=user, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        rss_end, rss_peak = app.rss_mb()

    warm = rss_after_warmup[0] if rss_after_warmup else float("nan")
    return {
        "clients": clients,
        "requests_per_client": requests,
        "completed": len(latencies),
        "failures": len(failures),
        "failure_examples": failures[:5],
        "wall_s": round(wall, 1),
        "latency_p50_s": _percentile(latencies, 50) if latencies else None,
        "latency_p95_s": _percentile(latencies, 95) if latencies else None,
        "rss_start_mb": round(rss_start),
        "rss_after_10_requests_mb": round(warm),
        "rss_end_mb": round(rss_end),
        "rss_peak_mb": round(rss_peak),
        "rss_growth_after_warmup": round(rss_end / warm - 1, 3) if rss_after_warmup else None,
    }
