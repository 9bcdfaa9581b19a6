"""A Hugging Face hub on localhost, for tests and the offline demo: it serves model folders through the
endpoints the real ``huggingface_hub`` client calls (a repository's info at a revision, its file tree,
each file's metadata and bytes by ``resolve``), with the headers it checks (``X-Repo-Commit``, ``ETag``,
``Content-Length``), so that downloads, pins and offline loads are tested through the real client.

Each repository is a folder ``<root>/<org>/<name>/``; its commit is a digest of its files (a changed file,
a new commit), and a branch or tag name resolves to it. Requests are recorded (``requests``) so that a
test can say who asked the hub for what."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import typing as tp
import urllib.parse
from pathlib import Path


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def commit_of(folder: Path) -> str:
    """The repository's commit: 40 hex digits over its files' names and bytes."""
    digest = hashlib.sha1(usedforsecurity=False)
    for name in _files(folder):
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    return digest.hexdigest()


class Hub:
    """``with Hub(root) as hub:`` serves ``root`` at ``hub.endpoint`` (set ``HF_ENDPOINT`` to it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, in order."""
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "the hub is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Hub:
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: tp.Any) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - the standard library's name
                hub._answer(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, body=True)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="hub").start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- answers ---------------------------------------------------------------------------------
    def _repo(self, org: str, name: str) -> Path | None:
        folder = self.root / org / name
        return folder if folder.is_dir() else None

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        path = urllib.parse.unquote(urllib.parse.urlparse(handler.path).path)
        self.requests.append((handler.command, path))
        parts = path.strip("/").split("/")
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "tree":  # .../tree/<rev>[/<path>]
            folder = self._repo(parts[2], parts[3])
            if folder is None:
                return self._send(handler, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            under = "/".join(parts[6:])
            entries = []
            for name in _files(folder):
                if under and not name.startswith(under + "/"):
                    continue
                data = (folder / name).read_bytes()
                blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
                entries.append({"type": "file", "oid": blob, "size": len(data), "path": name})
            return self._send(handler, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:  # /api/models/<org>/<name>[/revision/<rev>]
            folder = self._repo(parts[2], parts[3])
            if folder is None:
                return self._send(handler, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            info = {
                "id": f"{parts[2]}/{parts[3]}",
                "modelId": f"{parts[2]}/{parts[3]}",
                "sha": commit_of(folder),
                "private": False,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": [{"rfilename": f} for f in _files(folder)],
            }
            return self._send(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":  # /<org>/<name>/resolve/<rev>/<file>
            folder = self._repo(parts[0], parts[1])
            if folder is None:
                return self._send(handler, 404, b"Repository not found", {"X-Error-Code": "RepoNotFound"})
            commit = commit_of(folder)
            if parts[3] != commit and len(parts[3]) == 40 and all(c in "0123456789abcdef" for c in parts[3]):
                return self._send(handler, 404, b"Revision not found", {"X-Error-Code": "RevisionNotFound"})
            target = folder / "/".join(parts[4:])
            if not target.is_file():
                headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
                return self._send(handler, 404, b"Entry not found", headers)
            data = target.read_bytes()
            headers = {
                "X-Repo-Commit": commit,
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                "Content-Type": "application/octet-stream",
            }
            return self._send(handler, 200, data, headers, body)
        return self._send(handler, 404, b"Not found", {}, body)

    @staticmethod
    def _send(
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        headers: dict[str, str],
        body: bool = True,
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)
