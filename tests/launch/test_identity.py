"""The identity in the config UID is the content of the files that load, kept apart from the user's pin
(``model.revision``) and the commit it resolves to (``model.commit``): through the real huggingface_hub
client against a hub on localhost (``pipeline.testing.hub``), online and offline, for hub names and folders
alike; and stores written by 0.3 keep their entries (``pipeline.launch.aliases``)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import typing as tp
from pathlib import Path

from pipeline.launch.aliases import Candidate, alias, legacy_folder_identity, pick
from pipeline.launch.following import follow
from pipeline.launch.identity import folder_content
from pipeline.launch.model_files import content_identity
from pipeline.launch.submission import submit
from pipeline.store import Store
from pipeline.testing.hub import Hub, commit_of

from ..conftest import REPO, run_cli

REPO_ID = "lab/tiny-videomae"
FIXTURE_03 = Path(__file__).resolve().parent.parent / "fixtures" / "store-0.3.0"


def test_the_content_identity_is_each_loaded_files_path_and_sha256() -> None:
    a = content_identity({"config.json": "1" * 64, "model.safetensors": "2" * 64})
    assert a.startswith("content-") and a == content_identity({"model.safetensors": "2" * 64, "config.json": "1" * 64})
    assert a != content_identity({"config.json": "1" * 64, "model.safetensors": "3" * 64})  # other weights
    assert a != content_identity({"conf.json": "1" * 64, "model.safetensors": "2" * 64})  # a file renamed


def test_which_stored_config_a_content_identity_picks() -> None:
    """A 0.3 config that recorded the content wins (earlier launches went on there), then the config named
    by the content; else a 0.3 config whose model has that content, worked out only then; a config known by
    another content is another model."""
    asked: list[str] = []

    def same(c: Candidate) -> bool:
        asked.append(c.config_uid)
        return c.model == "lab/m@" + "a" * 40

    old = Candidate("u-old", "lab/m@" + "a" * 40, None)
    recorded = Candidate("u-rec", "lab/m@" + "b" * 40, "content-x")
    own = Candidate("u-own", "content-x", "content-x")
    other = Candidate("u-other", "lab/m@" + "a" * 40, "content-y")
    assert pick([own, old, recorded], "content-x", same) == recorded and not asked
    assert pick([own, old], "content-x", same) == own and not asked
    assert pick([other, recorded], "content-z", same) is None and not asked  # nothing unrecorded to look at
    assert pick([other, old], "content-z", same) == old and asked == ["u-old"]
    assert pick([Candidate("u", "files-0", None)], "content-z", lambda c: False) is None


def test_the_files_that_load_are_transformers_own() -> None:
    """The weights transformers loads (one file or the shards its index names; not a variant such as
    ``model.fp16.safetensors``, nor another library's), never a hidden path (as a folder's listing), and a
    shard its index names but the snapshot lacks is missing."""
    from pipeline.launch.model_files import loaded_files

    repo = ["config.json", "model.safetensors", "model.fp16.safetensors", "open_clip_model.safetensors",
            "pytorch_model.bin", ".ipynb_checkpoints/config-checkpoint.json", "README.md"]  # fmt: skip
    assert loaded_files(repo, False) == ["config.json", "model.safetensors"]
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
    assert loaded_files(["config.json", "pytorch_model.bin", *shards], False) == ["config.json", *shards]
    assert loaded_files(["config.json", "pytorch_model-00001-of-00002.bin"], False)[-1].endswith(".bin")


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    from pipeline.launch.model_files import missing_files

    index = {"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"a": "pytorch_model-1.bin"}}))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"x")
    names = ["model-00001-of-00002.safetensors", "model.safetensors.index.json", "pytorch_model.bin.index.json"]
    assert missing_files(tmp_path, names) == ["model-00002-of-00002.safetensors"]  # the .bin index is not loaded


def test_a_folder_is_named_by_what_loads(models_dir: Path, tmp_path: Path) -> None:
    """A README, a hidden folder or another framework's weights do not change a folder's identity; a
    remote-code file does where the code runs (``trust_remote_code``); a renamed folder is the same."""
    folder = tmp_path / "m"
    shutil.copytree(models_dir / "tiny-videomae", folder)
    cache = Store(tmp_path / "cache.zarr")
    cache.ensure()
    before = folder_content(folder, cache, False)
    (folder / "README.md").write_text("# card\n")
    (folder / "tf_model.h5").write_bytes(b"\0" * 64)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / "modeling_x.py").write_text("x = 1\n")
    assert folder_content(folder, cache, False) == before
    assert folder_content(folder, cache, True) != before
    folder.rename(tmp_path / "renamed")
    assert folder_content(tmp_path / "renamed", cache, False) == before


_RESOLVE = """
import json, sys
from pipeline.launch.identity import hub_identity
from pipeline.store import Store
store = Store(sys.argv[1]); store.ensure()
out = []
for name, revision, online in json.loads(sys.argv[2]):
    try:
        out.append(list(hub_identity(name, revision, False, store, online=online)))
    except Exception as e:
        out.append(["error", f"{type(e).__name__}: {e}"])
print(json.dumps(out))
"""


_ALIAS = """
import json, sys
from pipeline.config import build_run_config
from pipeline.launch.identity import resolve_identity
from pipeline.store import Store
path, name, old = sys.argv[1:4]
run = build_run_config({"model": {"name": name, "family": "videomae"}, "videos": ".", "store": path, "device": "cpu"})
spec = run.embed.model.model_copy(update={"identity": f"{name}@{old}"})
store = Store(path); store.ensure()
cuid = store.ensure_config(run.embed.model_copy(update={"model": spec}))
resolved = resolve_identity(run, online=True)
recorded = store.config_attrs(cuid).get("model_content")
print(json.dumps([resolved.embed.model.identity, resolved.embed.uid() == cuid, recorded]))
"""


def _python(code: str, env: dict[str, str], *args: str) -> tp.Any:
    full = {**os.environ, "PYTHONPATH": str(REPO), "NO_PROXY": "*", "no_proxy": "*", **env}
    done = subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _resolve(env: dict[str, str], store: Path, asks: list[tuple[str, str | None, bool]]) -> list[list[str]]:
    return tp.cast(list[list[str]], _python(_RESOLVE, env, str(store), json.dumps(asks)))


def test_a_hub_snapshot_is_named_by_the_content_of_its_loaded_files(models_dir: Path, tmp_path: Path) -> None:
    """Online, the hub's LFS metadata names the weights (never downloaded to be identified); offline, the
    cache's blobs do: the same identity, equal to a folder holding the same files. An upstream commit that
    adds a README keeps the identity, and a pin (a commit or a branch) resolves to its commit; changed
    weights give another identity."""
    repo = tmp_path / "hub" / REPO_ID
    shutil.copytree(models_dir / "tiny-videomae", repo)
    cache = Store(tmp_path / "cache.zarr")
    cache.ensure()
    folder = folder_content(repo, cache, False)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    with Hub(tmp_path / "hub") as hub:
        env["HF_ENDPOINT"] = hub.endpoint
        first = commit_of(repo)
        [[identity, commit]] = _resolve(env, tmp_path / "a.zarr", [(REPO_ID, None, True)])
        assert (identity, commit) == (folder, first)
        assert not [p for m, p in hub.requests if m == "GET" and p.endswith(".safetensors")]
        (repo / "README.md").write_text("# a model card, committed upstream\n")
        readme = commit_of(repo)
        online = _resolve(env, tmp_path / "a.zarr", [(REPO_ID, None, True), (REPO_ID, first, True)])
        assert online == [[folder, readme], [folder, first]]
        cached = tmp_path / "hf" / "hub" / "models--lab--tiny-videomae"
        assert (cached / "refs" / "main").read_text() == readme  # an offline launch resolves what this one did
        # a store 0.3 wrote at the first commit: found (by the first commit's content) after the README commit
        named, same_uid, recorded = _python(_ALIAS, env, str(tmp_path / "old.zarr"), REPO_ID, first)
        assert (named, same_uid, recorded) == (f"{REPO_ID}@{first}", True, folder)
        (repo / "model.safetensors").write_bytes((repo / "model.safetensors").read_bytes() + b" ")
        [[changed, _]] = _resolve(env, tmp_path / "a.zarr", [(REPO_ID, "main", True)])
        assert changed != folder
        staged = subprocess.run(
            [sys.executable, "-c", f"from huggingface_hub import snapshot_download; snapshot_download({REPO_ID!r}, "
             f"revision={first!r}, allow_patterns=['*.json', '*.safetensors'])"],
            env={**os.environ, **env, "NO_PROXY": "*", "no_proxy": "*"}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert staged.returncode == 0, staged.stderr[-2000:]
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    # a fresh store, so the identity comes from the cached blobs, not from what an online launch recorded
    assert _resolve(offline, tmp_path / "b.zarr", [(REPO_ID, first, False)]) == [[folder, first]]
    missing = _resolve(offline, tmp_path / "b.zarr", [("lab/absent", None, False)])
    assert missing[0][0] == "error" and "stage it once" in missing[0][1]
    # main now names the changed weights, which were never staged: an error naming them, not another identity
    for store in ("a.zarr", "b.zarr"):  # with what the online launch recorded, and without
        [[error, why]] = _resolve(offline, tmp_path / store, [(REPO_ID, None, False)])
        assert error == "error" and "stage it again" in why, why
    blob = (cached / "snapshots" / first / "model.safetensors").resolve()
    blob.unlink()  # a cache cleaned under the snapshot: a dangling link
    for store in ("a.zarr", "c.zarr"):
        [[error, why]] = _resolve(offline, tmp_path / store, [(REPO_ID, first, False)])
        assert error == "error" and "lacks model.safetensors" in why, why


def test_a_0_3_hub_config_keeps_its_entries_after_a_readme_commit(tmp_path: Path, make_run: tp.Any) -> None:
    """A store written by 0.3 named a hub model ``<name>@<commit>``: a launch that resolves that commit
    computes under that config and records the content in it; after an upstream commit (another 0.3 name)
    the content alone finds it."""
    run = make_run()
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    spec = run.embed.model
    old = run.embed.model_copy(update={"model": spec.model_copy(update={"identity": "lab/m@" + "a" * 40})})
    cuid = store.ensure_config(old)
    content = spec.identity
    hub_spec = spec.model_copy(update={"name": "lab/m", "tiny": False, "commit": "a" * 40})
    embed = run.embed.model_copy(update={"model": hub_spec})
    hub_run = run.model_copy(update={"store": str(store.path), "embed": embed})
    assert alias(store, hub_run, store) == "lab/m@" + "a" * 40
    assert store.config_attrs(cuid)["model_content"] == content
    later = hub_run.embed.model.model_copy(update={"commit": "b" * 40})
    later_run = hub_run.model_copy(update={"embed": hub_run.embed.model_copy(update={"model": later})})
    assert alias(store, later_run, store) == "lab/m@" + "a" * 40
    other = later.model_copy(update={"identity": "content-other"})
    other_run = later_run.model_copy(update={"embed": later_run.embed.model_copy(update={"model": other})})
    assert alias(store, other_run, store) is None
    # the same content also under its own name (a launch before the alias was recorded): one computation,
    # the 0.3 config, where launches go on; a reader with the name alone is not told of two versions
    own = store.ensure_config(run.embed)
    assert own != cuid and alias(store, later_run, store) == "lab/m@" + "a" * 40
    by_name = run.embed.model_copy(update={"model": spec.model_copy(update={"identity": None})})
    assert store.find_config(by_name) == cuid


def test_a_store_written_by_0_3_is_relaunched_without_computing_again(
    make_run: tp.Any, models_dir: Path, sample_dir: Path, tmp_path: Path
) -> None:
    """A config named by 0.3's folder identity (``files-<hash>`` over all the folder's files: the 0.3
    fixture store's tiny VideoMAE is named so) and an entry in it: a relaunch computes nothing and records
    the content; after a README lands in the model folder (another 0.3 name, the same content), still
    nothing."""
    fixture = json.loads((FIXTURE_03 / "videomae-27f395e6" / "zarr.json").read_text())["attributes"]["config"]
    legacy = legacy_folder_identity(models_dir / "tiny-videomae", Store(tmp_path / "cache.zarr"))
    assert legacy == fixture["model"]  # as 0.3 named it
    path = tmp_path / "old.zarr"
    video = sample_dir / "drift_25fps.mp4"
    run = make_run(videos=str(video), store=str(path), executor={"name": "debug"})
    named = run.embed.model.model_copy(update={"identity": legacy})
    old = run.model_copy(update={"embed": run.embed.model_copy(update={"model": named})})
    follow(submit(old, prepared=True, out=io.StringIO()), out=io.StringIO())
    [cuid] = Store(path).config_uids()
    assert Store(path).config(cuid)["model"] == legacy and len(Store(path).done_hashes(cuid)) == 1
    args = ["model=tiny_videomae", f"videos={video}", f"store={path}", f"models_dir={models_dir}", "device=cpu",
            "executor=debug", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    res = run_cli(*args)
    assert res.returncode == 0 and "computed 0  cached 1" in res.stdout, res.stdout + res.stderr
    assert Store(path).config_uids() == [cuid]
    assert Store(path).config_attrs(cuid)["model_content"] == run.embed.model.identity
    carded = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-videomae", carded / "tiny-videomae")
    (carded / "tiny-videomae" / "README.md").write_text("# tiny\n")
    assert legacy_folder_identity(carded / "tiny-videomae", Store(tmp_path / "cache.zarr")) != legacy
    res = run_cli(*args[:3], f"models_dir={carded}", *args[4:])
    assert res.returncode == 0 and "computed 0  cached 1" in res.stdout, res.stdout + res.stderr
    assert Store(path).config_uids() == [cuid]
