"""Everything ``pipeline.align`` knows of the store and of configs, in one module: a rewrite of the store's
layout changes only this file.

It uses the store's reader API (``pipeline.store.open``, ``Store.find_config``, ``Store.entries``,
``Store.load`` with ``start`` / ``stop``, ``Store.config_uids``, ``content_hash``; ``Store.config`` and
``Store.model_names`` only for a config whose entries are all gone) and
``pipeline.config.EmbedConfig``; the launcher's ``conf/`` folder turns launcher words into a config and a
config back into the launcher command that computes missing videos.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import tempfile
import typing as tp
from pathlib import Path

import numpy as np

from pipeline.align.core import VideoInfo, Window
from pipeline.align.errors import MissingVideosError

if tp.TYPE_CHECKING:
    from pipeline.config import EmbedConfig
    from pipeline.store import Store

ConfigLike = tp.Union[str, tp.Mapping[str, tp.Any], "EmbedConfig"]
"""A config UID in the store; the launch command's words (``"model=tiny_videomae frequency=8"``) or their
mapping (``{"model": "tiny_videomae", "frequency": 8}``); or an ``EmbedConfig`` (``pipeline.config.compose``)."""

_NOT_EMBED = ("videos", "store")
_HASHES: dict[tuple[str, int, int], str] = {}
"""Content hashes by (real path, size, mtime): a stimulus shown in many runs is read once per process."""


def conf_dir() -> Path:
    """The launcher's Hydra configuration (``conf/`` beside the package)."""
    from pipeline.config import CONF_DIR

    return CONF_DIR


def video_hash(path: str | os.PathLike[str]) -> str:
    """The store's key of a video file: its content hash (a renamed copy has the same one)."""
    from pipeline.store import content_hash

    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = content_hash(path)
    return _HASHES[key]


def open_store(store: str | os.PathLike[str] | Store) -> Store:
    from pipeline import store as store_mod

    return store if isinstance(store, store_mod.Store) else store_mod.open(store)


def config_list(config: ConfigLike | tp.Sequence[ConfigLike]) -> list[ConfigLike]:
    """The configs of an alignment: one, or a list of several feature spaces, each naming its model (a list
    of launch words was one config before 0.4: refused rather than read as several)."""
    from pipeline.config import looks_like_config_uid

    if not isinstance(config, (list, tuple)):
        return [tp.cast(ConfigLike, config)]
    if not config:
        raise ValueError("config: an empty list of configs")
    for item in config:
        words = item.split() if isinstance(item, str) and not looks_like_config_uid(item) else None
        unnamed = (words is not None and not any(w.startswith(("model=", "model.")) for w in words)) or (
            isinstance(item, tp.Mapping) and "model" not in item
        )
        if unnamed:
            raise ValueError(
                f"config: a list is several configs (feature spaces), each naming its model; {item!r} names none "
                "(one config's words go in one string: 'model=tiny_videomae frequency=8')"
            )
    return list(config)


def space_name(model: str, config_uid: str | None) -> str:
    """A feature space's name: the model's last name and the config UID's hash (``tiny-videomae-849508f3``)."""
    return f"{model.rstrip('/').rsplit('/', 1)[-1]}-{(config_uid or '')[-8:]}"


def layer_label(indices: tp.Sequence[int], aggregation: str) -> str:
    """The layers a feature was taken from: ``l4``, or ``l2,3,4mean`` for several aggregated into one."""
    if len(indices) == 1:
        return f"l{indices[0]}"
    return "l" + ",".join(str(i) for i in indices) + aggregation


def _hydra_value(value: tp.Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


def _conf_defaults() -> dict[str, tp.Any]:
    import yaml

    try:
        data = yaml.safe_load((conf_dir() / "config.yaml").read_text())
    except (OSError, ValueError):
        return {}
    return dict(data) if isinstance(data, dict) else {}


def _model_words(model: tp.Mapping[str, tp.Any]) -> list[str]:
    """``model=<choice>`` when a file of ``conf/model/`` describes this model, else its fields one by one;
    a hub model pinned to the commit the launch loaded (``model.revision``), so that the command computes
    with the same files, under the same UID, whatever upstream did since."""
    pin = [f"model.revision={model['commit']}"] if model.get("commit") else []
    return _model_choice(model) + pin


def _model_choice(model: tp.Mapping[str, tp.Any]) -> list[str]:
    import yaml

    for path in sorted((conf_dir() / "model").glob("*.yaml")):
        try:
            spec = dict(yaml.safe_load(path.read_text()).get("model", {}))
        except (OSError, ValueError, AttributeError):
            continue
        if all(spec.get(k) == model.get(k) for k in ("name", "family")) and bool(spec.get("tiny")) == bool(
            model.get("tiny")
        ):
            return [f"model={path.stem}"]
    words = [
        f"model.name={model['name']}",
        f"model.family={model['family']}",
        f"model.tiny={_hydra_value(bool(model.get('tiny')))}",
    ]
    if model.get("trust_remote_code"):
        words.append("model.trust_remote_code=true")
    return words


def launch_words(embed: EmbedConfig, models_dir: str | None = None) -> list[str]:
    """Launcher words that give ``embed``'s config UID: the model, then each field of its canonical config
    that differs from ``conf/config.yaml``'s default (and ``models_dir`` for a tiny model, when known)."""
    from pipeline.config import EmbedConfig

    words = _model_words(embed.model.model_dump())
    defaults = {k: v for k, v in _conf_defaults().items() if k in EmbedConfig.model_fields and k != "model"}
    try:
        default = EmbedConfig.model_validate({**defaults, "model": embed.model.model_dump()}).canonical()
    except Exception:  # noqa: BLE001 - an unreadable conf: then every field is written out
        default = {}
    for key, value in embed.canonical().items():
        if key in ("format_version", "model", "family") or default.get(key, ...) == value:
            continue
        words.append(f"{key}={_hydra_value(value)}")
    if embed.model.tiny and models_dir:
        words.append(f"models_dir={models_dir}")
    return words


class StoreSource:
    """The features of one config in a store: videos are found by content hash, read by time window."""

    def __init__(self, store: str | os.PathLike[str] | Store, config: ConfigLike) -> None:
        from pipeline.config import config_words, embed_config_of, looks_like_config_uid

        self.store = open_store(store)
        self.words: list[str] | None = None
        self.embed: EmbedConfig | None = None
        self.config_uid: str | None = None
        if isinstance(config, str) and looks_like_config_uid(config):
            if config not in self.store.config_uids():
                known = ", ".join(self.store.config_uids()) or "none"
                raise ValueError(f"config: {config!r} is not a config UID of {self.store.path} (it has: {known})")
            self.config_uid = config
        else:
            if isinstance(config, str):  # a mapping's command is rebuilt from its config (launch_words)
                self.words = config_words(config)
            self.embed = embed_config_of(config)  # a ConfigError (a ValueError) names the field
            try:
                self.config_uid = self.store.find_config(self.embed)
            except KeyError as e:
                if "versions of" in str(e):
                    raise ValueError(f"config: {e.args[0]}") from None
                self.config_uid = None  # nothing of this config is stored yet: every video is missing
        self.entries = {e.video_hash: e for e in self.store.entries(self.config_uid)} if self.config_uid else {}
        self._attrs: dict[str, tp.Any] | None = None
        self.hashes: dict[str, str] = {}

    # --- FeatureSource --------------------------------------------------------------------------------
    def _hash(self, video: Path) -> str:
        key = str(video)
        if key not in self.hashes:
            self.hashes[key] = video_hash(video)
        return self.hashes[key]

    def require(self, videos: tp.Sequence[Path]) -> None:
        missing = [v for v in videos if self._hash(v) not in self.entries]
        if missing:
            raise MissingVideosError(
                [Path(v) for v in missing], str(self.store.path), self.config_uid, self.launch_command(missing)
            )

    def info(self, video: Path) -> VideoInfo:
        entry = self.entries[self._hash(video)]
        return VideoInfo(period=1.0 / entry.frequency, duration=entry.duration)

    def _load(self, uid: str, start: float | None, stop: float | None) -> tp.Any:
        by: dict[str, tp.Any] = {}
        if self.embed is not None and self.embed.cache_n_layers is not None:
            by = {"layers": self.embed.layers, "layer_aggregation": self.embed.layer_aggregation}
        return self.store.load(uid, start=start, stop=stop, **by)

    def window(self, video: Path, start: float, stop: float) -> Window:
        """The samples in ``[start, stop)`` through the store's windowed read (only their time chunks); each
        feature named for its space, layer and place (``tiny-videomae-849508f3/l2/f17``)."""
        array = self._load(f"{self.config_uid}/{self._hash(video)}", start, stop)
        if self._attrs is None:
            self._attrs = dict(array.attrs)
        dims = [d for d in array.dims if d != "time"]
        values = np.moveaxis(np.asarray(array.values, dtype=np.float64), array.dims.index("time"), 0)
        prefix = self.space
        if "layer" not in dims:
            attrs = dict(array.attrs)
            prefix += "/" + layer_label(list(attrs.get("layer_indices") or []), str(attrs.get("layer_aggregation", "")))
        return Window(
            np.asarray(array["time"].values, dtype=np.float64),
            values.reshape(values.shape[0], -1),
            feature_names(
                dims, {d: list(array[d].values) if d in array.coords else None for d in dims}, values.shape[1:], prefix
            ),
        )

    def _first_attrs(self) -> dict[str, tp.Any]:
        if self._attrs is None and self.entries:
            self._attrs = dict(self._load(next(iter(self.entries.values())).uid, 0.0, 0.0).attrs)
        return self._attrs or {}

    @property
    def space(self) -> str:
        """This config's feature space name (``space_name``); for a ``cache_n_layers`` config read through
        a layer selection, the selection too (two selections of one cached config are two spaces)."""
        attrs = self._first_attrs()
        name = space_name(str(attrs.get("model", self.embed.model.name if self.embed else "features")), self.config_uid)
        how = str(attrs.get("layer_aggregation", ""))
        if "layers" in attrs and how != "none":  # the reader chose the layers: the store keeps them all
            name += "-" + layer_label(list(attrs.get("layer_indices") or []), how)
        return name

    def provenance(self) -> dict[str, tp.Any]:
        """What the features are: the space, config UID, model name and identity, the frequency, the layers
        read and how layers and tokens were aggregated, and the pipeline version that computed them."""
        attrs = self._first_attrs()
        config = json.loads(attrs.get("config", "{}")) if isinstance(attrs.get("config"), str) else {}
        layers = attrs.get("layers", config.get("layers", ""))
        return {
            "space": self.space,
            "config_uid": self.config_uid or "",
            "model": str(attrs.get("model", self.embed.model.name if self.embed else "")),
            "model_identity": str(config.get("model", "")),
            "frequency": config.get("frequency", attrs.get("frequency", "")),  # the field: "native" stays so
            "layers": list(layers) if isinstance(layers, (list, tuple)) else layers,
            "layer_indices": [int(i) for i in attrs.get("layer_indices") or []],
            "layer_aggregation": str(attrs.get("layer_aggregation") or config.get("layer_aggregation", "")),
            "token_aggregation": str(config.get("token_aggregation", "")),
            "pipeline_version": str(attrs.get("pipeline_version", "")),
            "store": os.path.abspath(self.store.path),
        }

    # --- the launcher command for what is missing ------------------------------------------------------
    def _run_config(self) -> dict[str, tp.Any]:
        """The launch settings an entry of this config was computed with (``run_config``), if one exists."""
        if not self.entries:
            return {}
        attrs = self._load(next(iter(self.entries.values())).uid, 0.0, 0.0).attrs
        return dict(attrs.get("run_config") or {})

    def _embed_for_command(self) -> tuple[EmbedConfig | None, str | None]:
        """The config to rebuild launcher words from: the one given, else the one an entry was computed with,
        else the config group's canonical fields and the model's last name (a config whose entries are gone)."""
        from pipeline.config import EmbedConfig

        run = self._run_config()
        models_dir = str(run["models_dir"]) if run.get("models_dir") else None  # as the launch recorded it
        if self.embed is not None:
            return self.embed, models_dir
        if run.get("embed"):
            return EmbedConfig.model_validate(run["embed"]), models_dir
        if self.config_uid is None:
            return None, None
        fields = self.store.config(self.config_uid)
        names = self.store.model_names(self.config_uid)
        identity = str(fields.get("model", ""))
        if not names:
            return None, None
        model = {
            "name": names[-1],
            "family": fields.get("family"),
            "tiny": "@" not in identity and names[-1].startswith("tiny-"),
        }
        rest = {k: v for k, v in fields.items() if k in EmbedConfig.model_fields and k != "model"}
        try:
            return EmbedConfig.model_validate({**rest, "model": model}), None
        except ValueError:
            return None, None

    def launch_command(self, missing: tp.Sequence[Path]) -> str:
        """``python -m pipeline.launch <config words> videos=<the missing videos> store=<store>``: one video is
        named directly, several through a list file (the launcher's ``videos=`` takes a text file of paths)."""
        paths = [os.path.abspath(v) for v in missing]
        if len(paths) == 1:
            videos = paths[0]
        else:
            digest = hashlib.blake2b("\n".join([str(self.config_uid), *paths]).encode(), digest_size=6).hexdigest()
            folder = Path(tempfile.gettempdir()) / "pipeline-align"
            folder.mkdir(parents=True, exist_ok=True)
            listing = folder / f"missing-{digest}.txt"
            listing.write_text("\n".join(paths) + "\n")
            videos = str(listing)
        if self.words is not None:
            words = [w for w in self.words if w.split("=", 1)[0] not in _NOT_EMBED]
        else:
            embed, models_dir = self._embed_for_command()
            words = launch_words(embed, models_dir) if embed is not None else [f"<the fields of {self.config_uid}>"]
        words += [f"videos={videos}", f"store={os.path.abspath(self.store.path)}"]
        return shlex.join([sys.executable, "-m", "pipeline.launch", *words])


_SHORT = {"feature": "f", "layer": "l", "layer_group": "g", "token": "t"}


def feature_names(
    dims: list[str], coords: dict[str, list[tp.Any] | None], shape: tuple[int, ...], prefix: str = ""
) -> tuple[str, ...]:
    """One name per flattened feature (C order over ``dims``), parts joined by ``/`` after ``prefix``:
    ``f<j>`` along ``feature``, ``l<layer>`` along ``layer``, ``g<first layer>`` along ``layer_group``,
    ``t<j>`` along ``token``, ``<dim><j>`` along any other (``tiny-videomae-849508f3/l2/f17``)."""
    names = [prefix]
    for dim, size in zip(dims, shape):
        values = coords.get(dim)
        short = _SHORT.get(dim, dim)
        labels = [f"{short}{values[j] if values is not None and dim != 'feature' else j}" for j in range(size)]
        names = [f"{a}/{b}" if a else b for a in names for b in labels]
    return tuple(names)
