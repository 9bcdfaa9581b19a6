"""``Store``: the zarr v3 store as analyses and workers see it, one group per config UID, one entry per
video content hash. Analyses find embeddings by config and video, never by path (``pipeline.store.layout``
says where things are; the other modules of this subpackage do the work)."""

from __future__ import annotations

import json
import logging
import os
import sys
import typing as tp
import uuid
from pathlib import Path

import numpy as np

from pipeline.common.files import now, share
from pipeline.config import ConfigLike, EmbedConfig, LayerAggregation, Layers, embed_config_of, looks_like_config_uid
from pipeline.store import facts, groups, layout, reader, records
from pipeline.store.hashing import content_hash
from pipeline.store.index import ATTEMPTS, Catalog, Entries
from pipeline.store.writer import SegmentWriter

log = logging.getLogger(__name__)


class OldLayoutError(OSError):
    """A store of an older layout: ``python -m pipeline.convert`` rewrites it."""


class Store:
    """Read and write embeddings; analyses find them by config and video, never by path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._catalogs: dict[str, Catalog] = {}
        self._warned: set[tuple[str, str]] = set()

    # --- layout -----------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the root group if needed, shared with the creator's group; raises a clear error on an
        unwritable location or a store of an older layout (to convert first)."""
        import zarr

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            share(self.path)
            if not (self.path / "zarr.json").exists():
                zarr.open_group(str(self.path), mode="a", zarr_format=3).attrs.update(
                    {"pipeline_store": layout.LAYOUT_VERSION}
                )
                share(self.path / "zarr.json")
            probe = self.path / f".write-test-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise OSError(f"store: cannot write to {self.path} ({e.strerror or e})") from e
        self.check_layout()

    def layout_version(self) -> int:
        try:
            meta = json.loads((self.path / "zarr.json").read_text())
        except (OSError, ValueError):
            return layout.LAYOUT_VERSION
        return int(meta.get("attributes", {}).get("pipeline_store", layout.LAYOUT_VERSION))

    def check_layout(self) -> None:
        """Raise ``OldLayoutError`` (with the command that converts it) for a store of layout 3 or 4."""
        version = self.layout_version()
        if version < layout.LAYOUT_VERSION:
            what = "one folder per entry, pipeline 0.2 and before" if version < 4 else "manifests, pipeline 0.3"
            raise OldLayoutError(
                f"store: {self.path} has layout {version} ({what}); this "
                f"version reads and writes layout {layout.LAYOUT_VERSION}: convert it once, losing nothing, with "
                f"{sys.executable} -m pipeline.convert store={self.path}"
            )

    def ensure_config(self, embed: EmbedConfig) -> str:
        """The config's group, created whole with its canonical config (``pipeline.store.groups``); the
        model's name is recorded among the names it has had (a renamed folder is the same model), so that
        readers can find it by name, and the commit jobs load among its commits (``pipeline.store.facts``)."""
        cuid = embed.uid()
        created: dict[str, tp.Any] = {"config": embed.canonical(), "created": now()}
        if embed.model.default_num_frames is not None:
            created["default_num_frames"] = embed.model.default_num_frames
        groups.create(self.path / cuid, created, self.path)
        learned: list[tuple[str, tp.Any]] = [("model_names", embed.model.name)]
        if embed.model.commit is not None:
            learned.append(("model_commits", embed.model.commit))  # what jobs loaded; not in the UID
        if embed.model.default_num_frames is not None:
            learned.append(("default_num_frames", embed.model.default_num_frames))
        self.record_config_facts(cuid, learned, required={"config": created["config"]})
        return cuid

    def config_attrs(self, config_uid: str) -> dict[str, tp.Any]:
        """The config group's attributes with its facts: its canonical ``config``, ``model_names``,
        ``model_commits``, ``model_content``..."""
        return self._group_attrs(config_uid)

    def record_config_facts(
        self, config_uid: str, learned: tp.Sequence[tuple[str, tp.Any]], required: dict[str, tp.Any] | None = None
    ) -> None:
        """Record facts about a config (``pipeline.store.facts``), then mirror all of them in its group's
        attributes for readers without this package (mending a mirror write that lost a race)."""
        config_dir = self.path / config_uid
        for key, value in learned:
            facts.record(config_dir, key, value)
        groups.mirror(config_dir, required)

    def model_names(self, config_uid: str) -> list[str]:
        return list(self._group_attrs(config_uid).get("model_names", []))

    def find_config(self, embed: EmbedConfig) -> str:
        """The config UID of ``embed`` in this store. Without a resolved model identity (a reader has the
        name, not the weights), the stored config with that model name and these fields; several
        versions of the model stored is an error that lists them, to be picked with ``model.identity``."""
        if embed.model.identity is not None:
            uid = embed.uid()
            if embed.model.default_num_frames is not None or (self.path / uid / "zarr.json").exists():
                return uid
        found: dict[str, str] = {}  # config UID -> its model identity
        contents: dict[str, str | None] = {}  # config UID -> the content of its model, where known
        for cuid in self.config_uids():
            own = groups.read_attrs(self.path / cuid)
            attrs = own if "default_num_frames" in own else self._group_attrs(cuid, own)  # an older group's facts
            config = dict(attrs.get("config", {}))
            identity = str(config.pop("model", ""))
            # a reader's num_frames equal to the model's own count is the stored config without it
            spec = embed.model.model_copy(update={"default_num_frames": attrs.get("default_num_frames")})
            wanted = {k: v for k, v in embed.model_copy(update={"model": spec}).canonical().items() if k != "model"}
            if config != wanted:
                continue  # the facts are read only for the configs with these fields
            attrs = self._group_attrs(cuid, own) if attrs is own else attrs  # the facts read once
            if embed.model.name not in attrs.get("model_names", []) and embed.model.identity is None:
                continue
            picked = embed.model.identity
            if picked is None or identity.endswith(picked) or attrs.get("model_content") == picked:
                found[cuid] = identity.rpartition("@")[2]
                contents[cuid] = attrs.get("model_content") or (identity if identity.startswith("content-") else None)
        if len(found) > 1 and None not in contents.values() and len(set(contents.values())) == 1:
            # one model's content under a 0.3 name and its own: the 0.3 config, where launches go on
            aliased = [c for c in found if not str(found[c]).startswith("content-")]
            found = {aliased[0]: found[aliased[0]]} if len(aliased) == 1 else found
        if len(found) > 1 and len(set(found.values())) == 1:
            # one computation under two UIDs (its num_frames spelled out before 0.2): the current UID
            current = [c for c in found if "default_num_frames" in self._group_attrs(c)]
            found = {current[0]: found[current[0]]} if len(current) == 1 else found
        if len(found) == 1:
            return next(iter(found))
        if not found and embed.model.identity is not None:
            return embed.uid()  # not stored: reading it says which entry is missing
        if not found:
            raise KeyError(f"no config of {embed.model.name!r} with these fields in {self.path}")
        versions = ", ".join(f"{c} (model.identity={identity})" for c, identity in found.items())
        raise KeyError(f"{len(found)} versions of {embed.model.name!r} in {self.path}: {versions}; set model.identity")

    def config_uids(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(
            p.name for p in self.path.iterdir() if not layout.is_reserved(p.name) and (p / "zarr.json").exists()
        )

    def _group_attrs(self, config_uid: str, own: dict[str, tp.Any] | None = None) -> dict[str, tp.Any]:
        """The group's attributes (``own``, where already read), its facts folded in (``facts.merged``)."""
        attrs = groups.read_attrs(self.path / config_uid) if own is None else own
        learned = facts.read(self.path / config_uid)
        for key, values in facts.conflicts(attrs, learned).items():
            if (config_uid, key) not in self._warned:
                self._warned.add((config_uid, key))
                log.warning("store: config %s has %s recorded as each of %s: none is used", config_uid, key, values)
        return facts.merged(attrs, learned)

    def config(self, config_uid: str) -> dict[str, tp.Any]:
        """The config's canonical fields (in its group's own attributes since its creation; never a fact)."""
        return dict(groups.read_attrs(self.path / config_uid).get("config", {}))

    def catalog(self, config_uid: str) -> Catalog:
        """The config's entries as its index and manifests say (kept: asking again reads only what is new)."""
        if config_uid not in self._catalogs:
            self._catalogs[config_uid] = Catalog(self.path / config_uid)
        return self._catalogs[config_uid]

    def has(self, config_uid: str, video_hash: str) -> bool:
        return self.catalog(config_uid).has(video_hash)

    def done_hashes(self, config_uid: str) -> set[str]:
        return self.catalog(config_uid).hashes()

    def compact(self, config_uid: str, grace_s: float | None = None) -> int:
        """Publish a checkpoint of the config's entries at its log's tip and clean up behind it (files older
        than ``grace_s``, by default ``log.GRACE_S``); returns how many commits it folded in."""
        catalog = self.catalog(config_uid)
        return catalog.compact() if grace_s is None else catalog.compact(grace_s)

    def remove_entries(self, config_uid: str, video_hashes: tp.Collection[str]) -> None:
        """Commit a tombstone for these entries (their rows stay in their segments until ``gc`` drops
        segments that no entry names)."""
        self.catalog(config_uid).remove(video_hashes)

    def leases(self, config_uid: str) -> Path:
        return self.path / config_uid / layout.LEASES

    # --- writing ----------------------------------------------------------------------------
    def write(self, config_uid: str, video_hash: str, data: np.ndarray, attrs: dict[str, tp.Any]) -> bool:
        """Write one entry ``(*features, time)`` as a segment of its own, published at once; returns False
        if the video was already stored. Workers pack many entries per segment (``writer``)."""
        out = self.writer(config_uid)
        try:
            out.add(video_hash, data, attrs)
            return self.flush(out)[video_hash]
        finally:
            out.close()

    def writer(self, config_uid: str, **limits: tp.Any) -> SegmentWriter:
        """A writer that packs entries into segments of its own (``SegmentWriter``; ``flush`` publishes)."""
        return SegmentWriter(self.path, config_uid, self.catalog(config_uid), **limits)

    def flush(self, out: SegmentWriter) -> dict[str, bool]:
        """Publish what ``out`` holds; a video written clears its recorded failure."""
        written = out.flush()
        for video_hash, ok in written.items():
            if ok:
                records.clear_failure(self.path / out.config_uid, video_hash)
        return written

    def progress(self, config_uid: str, video_hash: str) -> tuple[np.ndarray, dict[str, tp.Any]] | None:
        """The video's furthest progress ``(*features, steps)`` with its attributes (``times`` of those
        steps), as a writer saved it (``SegmentWriter.save_progress``); None when it has none or its entry
        is stored. Never an entry: listings and loads do not see it."""
        catalog = self.catalog(config_uid)
        for _ in range(ATTEMPTS):
            row = catalog.progress_row(video_hash)
            if row is None:
                return None
            segment = self.path / config_uid / str(row["segment"])
            try:
                found = reader.read_window(self.path, config_uid, row, None, None)
            except FileNotFoundError:
                continue  # overtaken by further progress, and its segment collected, since the look
            # zarr reads a shard removed under it as its fill value: the segment still there after the read
            # (names are never reused) means what was read is what was written
            if segment.is_dir():
                return found
        raise RuntimeError(f"store: the progress of {config_uid}/{video_hash} keeps changing under this reader")

    def write_queue(self, config_uid: str, launch_id: str, items: list[tuple[str, str]]) -> Path:
        """Write a launch's queue of ``(video_path, video_hash)`` once; its tasks read it (``read_queue``)."""
        return records.write_queue(self.path / config_uid, launch_id, items)

    def record_launch(
        self,
        config_uid: str,
        launch_id: str,
        n_videos: int,
        job_ids: list[str],
        executor: str = "",
        command: str = "",
        wait: bool = True,
    ) -> None:
        records.record_launch(self.path / config_uid, launch_id, n_videos, job_ids, executor, command, wait)

    def mark_cancelled(self, config_uid: str, launch_id: str) -> None:
        records.mark_cancelled(self.path / config_uid, launch_id)

    def launches(self, config_uid: str) -> dict[str, dict[str, tp.Any]]:
        return records.launches(self.path / config_uid)

    def record_measurement(self, record: dict[str, tp.Any]) -> None:
        records.record_measurement(self.path, record)

    def measurements(self) -> list[dict[str, tp.Any]]:
        return records.measurements(self.path)

    def record_failure(self, config_uid: str, video_hash: str, video_path: str, error: BaseException) -> None:
        records.record_failure(self.path / config_uid, video_hash, video_path, error)

    def failures(self, config_uid: str) -> dict[str, dict[str, tp.Any]]:
        return records.failures(self.path / config_uid)

    # --- reading ----------------------------------------------------------------------------
    def entries(self, config_uid: str | None = None) -> Entries:
        """Every entry (of one config UID if given): a sequence of ``EntryInfo``, its columns in ``.table``."""
        return Entries(
            [(cuid, self.catalog(cuid).listing()) for cuid in ([config_uid] if config_uid else self.config_uids())]
        )

    def resolve(
        self,
        uid: str | None = None,
        *,
        config: ConfigLike | None = None,
        video: str | os.PathLike[str] | None = None,
    ) -> str:
        """The entry UID for a UID, or for a (config, video file) pair; ``config`` a config UID of this
        store or any spelling of a config (``pipeline.config.compose``: ``"model=tiny_videomae"``...)."""
        return self._resolve(uid, config, video)[0]

    def _resolve(
        self, uid: str | None, config: ConfigLike | None, video: str | os.PathLike[str] | None
    ) -> tuple[str, EmbedConfig | None]:
        """The entry UID and the config it was named by (None for a UID: nothing to select layers by)."""
        embed = self._embed_of(config)
        if uid is not None:
            return uid, embed
        if config is None or video is None:
            raise ValueError("load: give an entry uid, or both config= and video=")
        cuid = config if embed is None else self.find_config(embed)
        return f"{cuid}/{content_hash(video)}", embed

    def _embed_of(self, config: ConfigLike | None) -> EmbedConfig | None:
        """The ``EmbedConfig`` a spelling names; None for none or a config UID of this store (an unknown
        UID is a ``KeyError`` that lists the store's, not a parse error of launch words)."""
        if config is None:
            return None
        if isinstance(config, str) and looks_like_config_uid(config):
            if config not in self.config_uids():
                known = ", ".join(self.config_uids()) or "none"
                raise KeyError(f"config: {config!r} is not a config UID of {self.path} (it has: {known})")
            return None
        return embed_config_of(config)

    def config_uid_of(self, config: ConfigLike) -> str:
        """The config UID that ``config`` names in this store: a config UID it holds, or a config found by
        model name and fields (``find_config``); a misspelt field is a ``ConfigError`` naming it."""
        embed = self._embed_of(config)
        return str(config) if embed is None else self.find_config(embed)

    def locate(self, uid: str) -> dict[str, tp.Any]:
        """Where entry ``<config_uid>/<video_hash>`` lies: its manifest row (segment, first row, rows,
        attributes); a missing entry is a KeyError."""
        config_uid, _, video_hash = uid.partition("/")
        row = self.catalog(config_uid).row(video_hash) if config_uid and video_hash else None
        if row is None:
            raise KeyError(f"no entry {uid!r} in {self.path}")
        return row

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
        the attributes' ``times`` are cut to match. ``layers`` / ``layer_aggregation`` pick layers of a
        ``cache_n_layers`` entry (``pipeline.store.reader.select_layers``)."""
        unknown = sorted(set(by) - {"config", "video"})
        if unknown:
            raise TypeError(f"load: unexpected argument(s) {', '.join(unknown)} (takes config=, video=, start=, stop=)")
        entry, embed = self._resolve(uid, by.get("config"), by.get("video"))
        data, attrs = reader.read_window(self.path, entry.partition("/")[0], self.locate(entry), start, stop)
        return reader.select_layers(entry, data, attrs, embed, layers, layer_aggregation)

    def load(
        self, uid: str | None = None, *, start: float | None = None, stop: float | None = None, **by: tp.Any
    ) -> tp.Any:
        """An ``xarray.DataArray`` whose axes are named for what they hold (``layer`` with the model's layer
        indices, ``layer_group``, ``token``, ``feature``, ``time`` in seconds); attributes carry the
        metadata. ``start`` / ``stop`` read a time window, ``layers`` / ``layer_aggregation`` pick layers of
        a ``cache_n_layers`` entry (see ``load_numpy``)."""
        return reader.to_dataarray(*self.load_numpy(uid, start=start, stop=stop, **by))


def open(path: str | os.PathLike[str]) -> Store:  # noqa: A001 - the documented reader entry point
    """Open a store for reading (``pipeline.store.open(path)``)."""
    store = Store(path)
    if not (store.path / "zarr.json").exists():
        raise FileNotFoundError(f"store: no pipeline store at {store.path}")
    store.check_layout()
    return store
