"""A loopback stand-in for the Hugging Face Hub's file-resolve endpoint, for download tests."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubServer:
    """Serves {repo: {filename: bytes}} at /{repo}/resolve/{revision}/{filename}, as the Hub does."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):  # noqa: N802
                self._answer(body=False)

            def do_GET(self):  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                server.requests.append(f"{self.command} {self.path}")
                repo, sep, rest = self.path.lstrip("/").partition("/resolve/")
                revision, _, filename = rest.partition("/")
                files = server.repos.get(repo)
                if not sep or files is None:
                    return self._error(404, "RepoNotFound", "Repository not found")
                if revision not in ("main", COMMIT):
                    return self._error(404, "RevisionNotFound", "Invalid rev id")
                if filename not in files:
                    return self._error(404, "EntryNotFound", "Entry not found")
                data = files[filename]
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
