"""A Hugging Face hub on localhost, for tests and the offline demo: it serves model folders through the
endpoints the real ``huggingface_hub`` client calls (a repository's info at a revision, its file tree,
each file's metadata and bytes by ``resolve``), with the headers it checks (``X-Repo-Commit``, ``ETag``,
``Content-Length``), so that downloads, pins and offline loads are tested through the real client.

Each repository is a folder ``<root>/<org>/<name>/``; its commit is a digest of its files (a changed file,
a new commit), and a branch or tag name resolves to it; a commit served before stays served (its files are
kept), as the hub keeps history. Large files are LFS files, as on the hub (``LFS``). Requests are recorded
(``requests``) so that a test can say who asked the hub for what."""

from __future__ import annotations

import fnmatch
import hashlib
import http.server
import json
import threading
import typing as tp
import urllib.parse
from pathlib import Path

LFS = ("*.safetensors", "*.bin", "*.h5", "*.msgpack", "*.pt", "*.onnx")
"""Files the hub keeps in Git LFS (its default ``.gitattributes``): their SHA-256 is in the repository's
metadata, and a download names them by it (``X-Linked-Etag``); other files are named by their git blob."""


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def commit_of(folder: Path) -> str:
    """The repository's commit: 40 hex digits over its files' names and bytes."""
    return _commit({name: (folder / name).read_bytes() for name in _files(folder)})


def _commit(files: dict[str, bytes]) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return digest.hexdigest()


def is_lfs(name: str) -> bool:
    return any(fnmatch.fnmatch(name.rpartition("/")[2], p) for p in LFS)


def _git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


def _metadata(name: str, data: bytes) -> dict[str, tp.Any]:
    """A file's entry in ``model_info(files_metadata=True)``: its git blob, size, and LFS record."""
    if not is_lfs(name):
        return {"rfilename": name, "size": len(data), "blobId": _git_blob(data)}
    pointer = _pointer(data)
    lfs = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
    return {"rfilename": name, "size": len(data), "blobId": _git_blob(pointer), "lfs": lfs}


class Hub:
    """``with Hub(root) as hub:`` serves ``root`` at ``hub.endpoint`` (set ``HF_ENDPOINT`` to it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, in order."""
        self._history: dict[tuple[str, str], dict[str, bytes]] = {}
        self._lock = threading.Lock()
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
    def _snapshot(self, org: str, name: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """The commit ``revision`` names and its files: the current ones for a branch or tag, those kept
        for a commit served before; None for an unknown repository or commit."""
        folder = self.root / org / name
        if not folder.is_dir():
            return None
        files = {n: (folder / n).read_bytes() for n in _files(folder)}
        commit = _commit(files)
        with self._lock:
            self._history.setdefault((f"{org}/{name}", commit), files)
            if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
                kept = self._history.get((f"{org}/{name}", revision))
                return None if kept is None else (revision, kept)
        return commit, files

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        url = urllib.parse.urlparse(handler.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        self.requests.append((handler.command, path))
        parts = path.strip("/").split("/")
        missing = (404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "tree":  # .../tree/<rev>[/<path>]
            snapshot = self._snapshot(parts[2], parts[3], parts[5])
            if snapshot is None:
                return self._send(handler, *missing)
            under = "/".join(parts[6:])
            entries = []
            for name, data in sorted(snapshot[1].items()):
                if under and not name.startswith(under + "/"):
                    continue
                meta = _metadata(name, data)
                entry = {"type": "file", "oid": meta["blobId"], "size": len(data), "path": name}
                if "lfs" in meta:
                    lfs = meta["lfs"]
                    entry["lfs"] = {"oid": lfs["sha256"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
                entries.append(entry)
            return self._send(handler, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:  # /api/models/<org>/<name>[/revision/<rev>]
            revision = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
            snapshot = self._snapshot(parts[2], parts[3], revision)
            if snapshot is None:
                return self._send(handler, *missing)
            commit, files = snapshot
            blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
            info = {
                "id": f"{parts[2]}/{parts[3]}",
                "modelId": f"{parts[2]}/{parts[3]}",
                "sha": commit,
                "private": False,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": [_metadata(n, d) if blobs else {"rfilename": n} for n, d in sorted(files.items())],
            }
            return self._send(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":  # /<org>/<name>/resolve/<rev>/<file>
            if not (self.root / parts[0] / parts[1]).is_dir():
                return self._send(handler, 404, b"Repository not found", {"X-Error-Code": "RepoNotFound"})
            snapshot = self._snapshot(parts[0], parts[1], parts[3])
            if snapshot is None:
                return self._send(handler, 404, b"Revision not found", {"X-Error-Code": "RevisionNotFound"})
            commit, files = snapshot
            name = "/".join(parts[4:])
            if name not in files:
                headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
                return self._send(handler, 404, b"Entry not found", headers)
            data = files[name]
            meta = _metadata(name, data)
            headers = {"X-Repo-Commit": commit, "ETag": f'"{meta["blobId"]}"'}
            headers["Content-Type"] = "application/octet-stream"
            if "lfs" in meta:
                headers.update({"X-Linked-Etag": f'"{meta["lfs"]["sha256"]}"', "X-Linked-Size": str(len(data))})
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
