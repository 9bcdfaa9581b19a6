"""``python -m pipeline.report store=PATH [config=UID] [out=DIR] [videos=N]``: a picture per config.

For each config UID, one PNG: the embedding of a few videos over time (features x time heat-maps, each
feature z-scored over time), the time-by-time cosine similarity of the first video, and how long each
video took its worker. ``out/index.html`` embeds them all.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

import numpy as np

from pipeline.common.text import short
from pipeline.store import Store
from pipeline.tools.args import UsageError, chosen_configs, open_store, parse_args

USAGE = "usage: python -m pipeline.report store=PATH [config=UID] [out=DIR] [videos=N]"


def similarity(data: np.ndarray) -> np.ndarray:
    """Cosine similarity between every pair of time steps of a ``(*features, time)`` array."""
    flat = data.reshape(-1, data.shape[-1]).T.astype(np.float64)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    unit = flat / np.where(norm == 0, 1.0, norm)
    return unit @ unit.T


def zscore_time(data: np.ndarray) -> np.ndarray:
    flat = data.reshape(-1, data.shape[-1]).astype(np.float64)
    std = flat.std(axis=1, keepdims=True)
    return (flat - flat.mean(axis=1, keepdims=True)) / np.where(std == 0, 1.0, std)


def _end(times: np.ndarray) -> float:
    """Where the last time step's cell ends, so that each column spans one step."""
    step = float(times[1] - times[0]) if len(times) > 1 else 1.0
    return float(times[-1]) + step


def render_config(store: Store, cuid: str, out: Path, n_videos: int = 3) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = store.entries(cuid)
    if not entries:
        raise UsageError(f"config {cuid} has no entries to draw")
    shown = entries[:n_videos]
    fig = plt.figure(figsize=(4.2 * (len(shown) + 2), 4.2), constrained_layout=True)
    grid = fig.add_gridspec(1, len(shown) + 2)
    loaded = [store.load_numpy(entry.uid) for entry in shown]
    for i, (entry, (data, attrs)) in enumerate(zip(shown, loaded)):
        times = np.asarray(attrs["times"])
        ax = fig.add_subplot(grid[0, i])
        image = ax.imshow(
            zscore_time(data),
            aspect="auto",
            cmap="RdBu_r",
            vmin=-3,
            vmax=3,
            interpolation="nearest",
            extent=(times[0], _end(times), data.size // data.shape[-1], 0),
        )
        ax.set_title(f"{Path(entry.video_path).name}\n{tuple(data.shape)}", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("feature" if i == 0 else "")
    # under the heatmaps: at their right it would stand where the similarity plot's time axis is labelled
    fig.colorbar(image, ax=fig.axes[: len(shown)], shrink=0.8, label="z-score over time", location="bottom")
    ax = fig.add_subplot(grid[0, len(shown)])
    first_data, first_attrs = loaded[0]
    t0 = np.asarray(first_attrs["times"])
    end = _end(t0)
    sim = ax.imshow(similarity(first_data), cmap="viridis", extent=(t0[0], end, end, t0[0]), interpolation="nearest")
    fig.colorbar(sim, ax=ax, shrink=0.8, label="cosine")
    ax.set_title(f"time x time similarity\n{Path(shown[0].video_path).name}", fontsize=9)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("time (s)")
    ax = fig.add_subplot(grid[0, len(shown) + 1])
    seconds = [e.seconds for e in entries]
    ax.barh(range(len(entries)), seconds, color="tab:gray")
    ax.set_yticks(range(len(entries)), [Path(e.video_path).name for e in entries], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("worker seconds per video")
    ax.set_title(f"job durations: {len(entries)} videos, {sum(seconds):.1f} s", fontsize=9)
    config = store.config(cuid)
    fig.suptitle(
        f"{cuid}  {', '.join(store.model_names(cuid)) or config.get('model')}  "
        f"frequency={short(config.get('frequency'))}  "
        f"layers={short(config.get('layers'))}  "
        f"tokens={config.get('token_aggregation')}",
        fontsize=10,
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{cuid}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_html(pictures: dict[str, Path], out: Path, store: Store) -> Path:
    body = "\n".join(
        f"<h2>{html.escape(cuid)}</h2>\n<p><code>{html.escape(str(store.config(cuid)))}</code></p>\n"
        f'<img src="{html.escape(p.name)}" alt="{html.escape(cuid)}" style="max-width:100%">'
        for cuid, p in pictures.items()
    )
    page = out / "index.html"
    page.write_text(
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>embeddings in {html.escape(str(store.path))}"
        f"</title></head>\n<body>\n<h1>{html.escape(str(store.path))}</h1>\n{body}\n</body></html>\n"
    )
    return page


def main(argv: list[str] | None = None) -> int:
    values, _, words = parse_args(argv, {"store", "config", "out", "videos"}, set(), USAGE)
    if words:
        raise UsageError(f"unexpected argument {words[0]!r}\n{USAGE}")
    store = open_store(values)
    uids = chosen_configs(store, values)
    if not uids:
        raise UsageError(f"{store.path} is empty")
    out = Path(values.get("out", "report"))
    pictures = {}
    for cuid in uids:
        if store.entries(cuid):
            pictures[cuid] = render_config(store, cuid, out, int(values.get("videos", 3)))
            print(f"wrote {pictures[cuid]}")
    print(f"wrote {write_html(pictures, out, store)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
