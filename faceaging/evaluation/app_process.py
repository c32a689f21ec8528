"""Start app.py the way a user does (`python app.py`) on a free loopback port.

Used by the benchmark (cold start), the load test and the live app tests alike.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`with AppProcess() as app:` runs app.py until the block ends; `app.url` serves it."""

    def __init__(self, env: dict[str, str] | None = None, log_dir: Path | None = None, timeout: float = 300):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {
            **os.environ,
            "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            **(env or {}),
        }
        self.log_path = (log_dir or REPO / "artifacts") / f"app_{self.port}.log"
        self.timeout = timeout
        self.ready_seconds = float("nan")  # from launch to the first page served

    def __enter__(self) -> AppProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in __exit__)
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"app.py exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        self.ready_seconds = time.perf_counter() - started
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise TimeoutError(f"app.py did not start within {self.timeout:.0f} s")

    def rss_mb(self) -> tuple[float, float]:
        """The server's (current, peak) resident memory in MB, from /proc (Linux)."""
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines() if ":" in line
        )
        return tuple(int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
