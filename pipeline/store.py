"""The zarr v3 store: one group per config UID, one array per video content hash.

Layout::

    <store>/zarr.json                         root group
    <store>/<config_uid>/zarr.json            group; attrs: canonical config
    <store>/<config_uid>/<video_hash>/        array (*features, time) + attrs
    <store>/<config_uid>/_failed/<hash>.json  last failure of a video under that config
    <store>/<config_uid>/_index.json          table of the config's entries (listing reads this, not each entry)
    <store>/<config_uid>/_leases/, _launches/ per-video claims; what each launch asked for
    <store>/_staging/                         entries being written (renamed into place when complete)
    <store>/_index/hashes.json                content hashes by (path, size, mtime)

Each entry is one sharded array (``zarr.json`` and one shard file ``c/0/0``) however long the video.

An entry becomes visible by one directory rename, so readers never see a partial array.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import json
import math
import os
import shutil
import socket
import typing as tp
import uuid
from pathlib import Path

import numpy as np

from . import faults
from .aggregation import LayerAggregation, Layers
from .config import FORMAT_VERSION, EmbedConfig
from .lease import LEASES, current_job_id

PIPELINE_VERSION = "0.1.0"
_HASH_CHUNK = 8 << 20
_STAGING = "_staging"
_FAILED = "_failed"
_LAUNCHES = "_launches"
_INDEX = "_index.json"
TIME_CHUNK = 256
"""Time steps per chunk inside an entry's one shard: reading a time window reads only its chunks."""


class StoreError(OSError):
    """The store itself cannot take writes (full, read-only): no video is to blame, so the shard stops."""


_STORE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def content_hash(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-128 of the file's bytes, streamed: equal bytes, equal hash, whatever the name."""
    digest = hashlib.blake2b(digest_size=16)
    with builtins.open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def path_key(path: str | os.PathLike[str]) -> str:
    """Key of a file whose bytes cannot be read (a dangling link): failures are recorded under it."""
    return "path-" + hashlib.blake2b(os.path.abspath(path).encode(), digest_size=12).hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    uid: str
    """``<config_uid>/<video_hash>``."""
    config_uid: str
    video_hash: str
    video_path: str
    model: str
    shape: tuple[int, ...]
    frequency: float
    duration: float
    created: str
    seconds: float = 0.0
    """Wall time the worker spent on this video."""
    job_id: str = ""


_INDEX_FIELDS = [f.name for f in dataclasses.fields(EntryInfo) if f.name not in ("uid", "config_uid", "video_hash")]
"""The index is a table (field names once, one row per entry): a third of the size of one object per entry."""


def _json_default(value: tp.Any) -> tp.Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _jsonable(value: tp.Any) -> tp.Any:
    return json.loads(json.dumps(value, default=_json_default))


class Store:
    """Read and write embeddings; analyses find them by config and video, never by path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # --- layout -----------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the root group if needed; raises a clear error on an unwritable location."""
        import zarr

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not (self.path / "zarr.json").exists():
                zarr.open_group(str(self.path), mode="a", zarr_format=3).attrs.update(
                    {"pipeline_store": FORMAT_VERSION}
                )
            probe = self.path / f".write-test-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise OSError(f"store: cannot write to {self.path} ({e.strerror or e})") from e

    def ensure_config(self, embed: EmbedConfig) -> str:
        """The config's group, created with its canonical config; the model's name is added to the names
        it has had (a renamed folder is the same model), so that readers can find it by name."""
        import zarr

        cuid = embed.uid()
        group = zarr.open_group(str(self.path / cuid), mode="a", zarr_format=3)
        names = list(tp.cast(list, group.attrs.get("model_names", [])))
        if "config" not in group.attrs:
            group.attrs.update({"config": embed.canonical(), "created": now()})
        if embed.model.name not in names:
            group.attrs["model_names"] = [*names, embed.model.name]
        return cuid

    def model_names(self, config_uid: str) -> list[str]:
        return list(self._group_attrs(config_uid).get("model_names", []))

    def find_config(self, embed: EmbedConfig) -> str:
        """The config UID of ``embed`` in this store. Without a resolved model identity (a reader has the
        name, not the weights), the stored config with that model name and these fields; several
        versions of the model stored is an error that lists them, to be picked with ``model.identity``."""
        if embed.model.identity is not None:
            return embed.uid()
        wanted = {k: v for k, v in embed.canonical().items() if k != "model"}
        found: dict[str, str] = {}  # config UID -> its model identity
        for cuid in self.config_uids():
            attrs = self._group_attrs(cuid)
            config = dict(attrs.get("config", {}))
            identity = str(config.pop("model", ""))
            if embed.model.name in attrs.get("model_names", []) and config == wanted:
                found[cuid] = identity.rpartition("@")[2]
        if len(found) == 1:
            return next(iter(found))
        if not found:
            raise KeyError(f"no config of {embed.model.name!r} with these fields in {self.path}")
        versions = ", ".join(f"{c} (model.identity={identity})" for c, identity in found.items())
        raise KeyError(f"{len(found)} versions of {embed.model.name!r} in {self.path}: {versions}; set model.identity")

    def config_uids(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if not p.name.startswith("_") and (p / "zarr.json").exists())

    def _group_attrs(self, config_uid: str) -> dict[str, tp.Any]:
        meta = json.loads((self.path / config_uid / "zarr.json").read_text())
        return dict(meta.get("attributes", {}))

    def config(self, config_uid: str) -> dict[str, tp.Any]:
        return dict(self._group_attrs(config_uid).get("config", {}))

    def has(self, config_uid: str, video_hash: str) -> bool:
        return (self.path / config_uid / video_hash / "zarr.json").exists()

    def done_hashes(self, config_uid: str) -> set[str]:
        folder = self.path / config_uid
        if not folder.is_dir():
            return set()
        # One directory read, no per-entry stat (scandir's type comes with the listing): an entry's
        # folder appears by one rename, complete.
        with os.scandir(folder) as listing:
            return {e.name for e in listing if not e.name.startswith(("_", ".")) and e.is_dir()}

    # --- writing ----------------------------------------------------------------------------
    def write(
        self,
        config_uid: str,
        video_hash: str,
        data: np.ndarray,
        attrs: dict[str, tp.Any],
    ) -> bool:
        """Write an entry atomically; returns False if another writer completed it first."""
        import zarr

        target = self.path / config_uid / video_hash
        if target.exists():
            return False
        staging = self.path / _STAGING / f"{config_uid}-{video_hash}-{uuid.uuid4().hex[:8]}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            chunks = (*data.shape[:-1], max(1, min(data.shape[-1], TIME_CHUNK)))
            array = zarr.create_array(
                store=str(staging),
                shape=data.shape,
                dtype=data.dtype,
                chunks=chunks,
                shards=(*chunks[:-1], chunks[-1] * math.ceil(max(data.shape[-1], 1) / chunks[-1])),
                zarr_format=3,
                attributes=_jsonable(attrs),
            )
            array[...] = data
            faults.in_write()
            try:
                os.rename(staging, target)
            except OSError:
                if (target / "zarr.json").exists():
                    return False
                raise
        except OSError as e:
            if e.errno in _STORE_ERRNOS:
                raise StoreError(
                    e.errno,
                    f"store: {os.strerror(e.errno or 0).lower()} under {self.path} while writing entry "
                    f"{config_uid}/{video_hash} ({data.nbytes} bytes); it was not written and stored entries "
                    "are intact: free space (python -m pipeline.gc) or move the store, then relaunch",
                ) from e
            raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        failed = self.path / config_uid / _FAILED / f"{video_hash}.json"
        failed.unlink(missing_ok=True)
        return True

    def leases(self, config_uid: str) -> Path:
        return self.path / config_uid / LEASES

    def record_launch(
        self, config_uid: str, launch_id: str, videos: dict[str, str], job_ids: list[str], executor: str = ""
    ) -> None:
        """Remember what a launch asked for (video hash -> path) and its jobs, so that status can count what
        is pending and cancel can find the jobs."""
        folder = self.path / config_uid / _LAUNCHES
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "time": now(),
            "videos": videos,
            "job_ids": job_ids,
            "host": socket.gethostname(),
            "executor": executor,
        }
        write_atomic(folder / f"{launch_id}.json", json.dumps(record))

    def launches(self, config_uid: str) -> dict[str, dict[str, tp.Any]]:
        folder = self.path / config_uid / _LAUNCHES
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def record_failure(self, config_uid: str, video_hash: str, video_path: str, error: BaseException) -> None:
        folder = self.path / config_uid / _FAILED
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "video_path": video_path,
            "error_type": type(error).__name__,
            "message": str(error),
            "job_id": current_job_id(),
            "host": socket.gethostname(),
            "time": now(),
        }
        write_atomic(folder / f"{video_hash}.json", json.dumps(record, indent=1))

    def failures(self, config_uid: str) -> dict[str, dict[str, tp.Any]]:
        folder = self.path / config_uid / _FAILED
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}

    # --- reading ----------------------------------------------------------------------------
    def _array(self, uid: str) -> tp.Any:
        import zarr

        folder = self.path / uid
        if not (folder / "zarr.json").exists():
            raise KeyError(f"no entry {uid!r} in {self.path}")
        return zarr.open_array(str(folder), mode="r", zarr_format=3)

    def _entry_info(self, cuid: str, vhash: str) -> EntryInfo | None:
        try:
            meta = json.loads((self.path / cuid / vhash / "zarr.json").read_text())
        except (OSError, ValueError):
            return None
        attrs = meta.get("attributes", {})
        return EntryInfo(
            uid=f"{cuid}/{vhash}",
            config_uid=cuid,
            video_hash=vhash,
            video_path=attrs.get("video_path", ""),
            model=attrs.get("model", ""),
            shape=tuple(meta["shape"]),
            frequency=float(attrs.get("frequency", 0.0)),
            duration=float(attrs.get("duration", 0.0)),
            created=attrs.get("created", ""),
            seconds=float(attrs.get("seconds", 0.0)),
            job_id=str(attrs.get("job_id", "")),
        )

    def entries(self, config_uid: str | None = None) -> list[EntryInfo]:
        """Every complete entry (of one config UID if given), from the per-config index.

        The index (``<config_uid>/_index.json``) is one small object; entries missing from it (written since)
        are read from their own metadata and the index is rewritten, atomically, when the store is writable.
        Concurrent rewrites are safe: each writes what it saw, and anything lost is found again next time.
        """
        out: list[EntryInfo] = []
        for cuid in [config_uid] if config_uid else self.config_uids():
            out.extend(self._indexed(cuid))
        return out

    def _indexed(self, cuid: str) -> list[EntryInfo]:
        index_path = self.path / cuid / _INDEX
        try:
            table = json.loads(index_path.read_text())
            fields = table["fields"]
            cached = {
                h: EntryInfo(uid=f"{cuid}/{h}", config_uid=cuid, video_hash=h, **dict(zip(fields, row)))
                for h, row in table["rows"].items()
            }
            cached = {h: dataclasses.replace(e, shape=tuple(e.shape)) for h, e in cached.items()}
        except (OSError, ValueError, TypeError, KeyError):
            cached = {}
        present = self.done_hashes(cuid)
        fresh = {h: cached[h] for h in present if h in cached}
        for h in present - fresh.keys():
            info = self._entry_info(cuid, h)
            if info is not None:
                fresh[h] = info
        if fresh.keys() != cached.keys():
            table = {
                "fields": _INDEX_FIELDS,
                "rows": {h: [getattr(e, f) for f in _INDEX_FIELDS] for h, e in fresh.items()},
            }
            with contextlib.suppress(OSError):
                write_atomic(index_path, json.dumps(table, separators=(",", ":")))
        return [fresh[h] for h in sorted(fresh)]

    def resolve(
        self,
        uid: str | None = None,
        *,
        config: EmbedConfig | tp.Mapping[str, tp.Any] | str | None = None,
        video: str | os.PathLike[str] | None = None,
    ) -> str:
        """The entry UID for a UID, or for a (config, video file) pair."""
        if uid is not None:
            return uid
        if config is None or video is None:
            raise ValueError("load: give an entry uid, or both config= and video=")
        cuid = config if isinstance(config, str) else self.find_config(_embed_config(config))
        return f"{cuid}/{content_hash(video)}"

    def load_numpy(
        self,
        uid: str | None = None,
        *,
        start: float | None = None,
        stop: float | None = None,
        layers: Layers | None = None,
        layer_aggregation: LayerAggregation | None = None,
        **by: tp.Any,
    ) -> tuple[np.ndarray, dict[str, tp.Any]]:
        """The array ``(*features, time)`` and its attributes. ``start`` / ``stop`` (seconds, stop excluded)
        keep the samples whose time lies in that window, reading only the time chunks that hold them;
        the attributes' ``times`` are cut to match.

        An entry computed with ``cache_n_layers`` holds the token-aggregated states of its cached layers;
        ``layers`` / ``layer_aggregation`` select and combine them (relative depth over the cached layers),
        defaulting to those of ``config=`` when given, else every cached layer kept apart. The attributes'
        ``layer_indices``, ``layers`` and ``layer_aggregation`` then describe the selection."""
        entry = self.resolve(uid, **by)
        array = self._array(entry)
        attrs = dict(array.attrs)
        times = np.asarray(attrs["times"], dtype=np.float64)
        lo = 0 if start is None else int(np.searchsorted(times, start, side="left"))
        hi = len(times) if stop is None else int(np.searchsorted(times, stop, side="left"))
        hi = max(lo, hi)
        attrs["times"] = times[lo:hi].tolist()
        data = np.asarray(array[...] if (lo, hi) == (0, len(times)) else array[..., lo:hi])
        if attrs.get("config", {}).get("cache_n_layers") is None:
            if layers is not None or layer_aggregation is not None:
                raise ValueError(
                    f"load: entry {entry} was computed with its layers already selected and aggregated; "
                    "to choose layers when reading, compute with cache_n_layers"
                )
            return data, attrs
        config = by.get("config")
        if config is not None and not isinstance(config, str):
            embed = _embed_config(config)
            layers = embed.layers if layers is None else layers
            layer_aggregation = embed.layer_aggregation if layer_aggregation is None else layer_aggregation
        if layers is None and layer_aggregation is None:
            return data, {**attrs, "layer_aggregation": "none"}
        from .aggregation import layer_view

        view_layers: Layers = EmbedConfig.model_fields["layers"].default if layers is None else layers
        view_how: LayerAggregation = layer_aggregation or "mean"
        data, positions = layer_view(data, view_layers, view_how)
        attrs["layer_indices"] = [attrs["layer_indices"][i] for i in positions]
        return data, {**attrs, "layers": view_layers, "layer_aggregation": view_how}

    def load(
        self, uid: str | None = None, *, start: float | None = None, stop: float | None = None, **by: tp.Any
    ) -> tp.Any:
        """An ``xarray.DataArray`` whose axes are named for what they hold (``layer`` with the model's layer
        indices, ``layer_group``, ``token``, ``feature``, ``time`` in seconds); attributes carry the
        metadata. ``start`` / ``stop`` read a time window, ``layers`` / ``layer_aggregation`` pick layers of
        a ``cache_n_layers`` entry (see ``load_numpy``)."""
        import xarray as xr

        from .aggregation import output_dims

        data, attrs = self.load_numpy(uid, start=start, stop=stop, **by)
        config = attrs.get("config", {})
        dims, coords = output_dims(
            data.ndim,
            list(attrs.get("layer_indices") or []),
            str(attrs.get("layer_aggregation") or config.get("layer_aggregation", "")),
            str(config.get("token_aggregation", "")),
        )
        times = np.asarray(attrs["times"], dtype=np.float64)
        flat = {k: v for k, v in attrs.items() if k != "times"}
        flat["config"] = json.dumps(config, sort_keys=True)
        return xr.DataArray(data, dims=dims, coords={**coords, "time": times}, attrs=flat)


def _embed_config(config: EmbedConfig | tp.Mapping[str, tp.Any]) -> EmbedConfig:
    return config if isinstance(config, EmbedConfig) else EmbedConfig.model_validate(dict(config))


def open(path: str | os.PathLike[str]) -> Store:  # noqa: A001 - the documented reader entry point
    """Open a store for reading (``pipeline.store.open(path)``)."""
    store = Store(path)
    if not (store.path / "zarr.json").exists():
        raise FileNotFoundError(f"store: no pipeline store at {store.path}")
    return store
