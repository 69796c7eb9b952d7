"""Object storage (common/storage.py): the layer on memory://, then training, evaluation, embed
and search against a real S3 API (moto's server on loopback, s3fs as the client, credentials
from the environment) on shards made by stage 1 on the smoke config, each compared with the
same run on local paths; and the errors of bad locations, each one line naming the URL. The
runs that need stage 1's shards are marked slow."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from common import storage
from common.config import config_for_shards, load_config, public, save_config
from common.files import LockedError
from common.lease import LEASE_NAME
from conftest import REPO_ROOT, S3_ENV, SMOKE, free_port
from models.checkpoint import load_checkpoint
from pipeline.eval import main as eval_main
from pipeline.search import main as search_main
from stylecode.index import load_index
from stylecode.store import read_folder
from train.checkpoint import last_checkpoint_path
from train.main import main as train_main
from train.main import run_training


@pytest.fixture(autouse=True)
def no_storage_options():
    """Every loaded config sets the layer's options: each test starts and ends without any."""
    storage.configure(None)
    yield
    storage.configure(None)


# --- the layer itself, on fsspec's in-memory file system --------------------------------------

def test_join_name_parent_and_suffix_keep_urls_whole():
    url = storage.join("s3://b/shards/", "train", "shard-000001.tar")
    assert url == "s3://b/shards/train/shard-000001.tar"
    assert storage.name(url) == "shard-000001.tar" and storage.parent(url) == "s3://b/shards/train"
    assert storage.with_suffix(url, ".stats.json") == "s3://b/shards/train/shard-000001.stats.json"
    assert storage.join("/tmp/a", "b") == "/tmp/a/b" and not storage.is_url("/tmp/a")
    assert storage.resolve("s3://b/x") == "s3://b/x" and storage.resolve("rel") == str(Path("rel").resolve())


def test_memory_round_trip_listing_and_atomic_write():
    root = "memory://layer"
    storage.write_text(storage.join(root, "a", "x.json"), "{}")
    storage.write_bytes(storage.join(root, "a", "y.bin"), b"\x00\x01")
    assert [storage.name(p) for p in storage.listdir(storage.join(root, "a"))] == ["x.json", "y.bin"]
    assert [storage.name(p) for p in storage.glob(storage.join(root, "a", "*.bin"))] == ["y.bin"]
    assert storage.is_dir(storage.join(root, "a")) and storage.is_file(storage.join(root, "a", "x.json"))
    assert storage.read_bytes(storage.join(root, "a", "y.bin")) == b"\x00\x01"
    # A block that fails leaves nothing under the name: no half-written object.
    with pytest.raises(RuntimeError):
        with storage.open_output(storage.join(root, "a", "half.pt")) as handle:
            handle.write(b"partial")
            raise RuntimeError("killed mid-write")
    assert not storage.exists(storage.join(root, "a", "half.pt"))
    storage.check_writable(storage.join(root, "out"))
    assert storage.glob(storage.join(root, "out", ".write-check-*")) == []   # the probe is gone


def test_unknown_scheme_missing_backend_and_missing_object_are_named():
    with pytest.raises(storage.StorageError, match=r"foo://x/y: unknown URL scheme 'foo://'"):
        storage.check_readable("foo://x/y")
    with pytest.raises(storage.StorageError, match=r"memory://nowhere/shards"):
        storage.check_readable("memory://nowhere/shards")


def test_saved_configs_and_checkpoints_hold_no_credentials(tmp_path):
    cfg = load_config(None, ["storage.options.s3.secret=s3cr3t", "storage.options.s3.key=AKIA1",
                             "storage.options.s3.endpoint_url=http://minio:9000",
                             "storage.options.s3.client_kwargs.aws_session_token=tok"])
    assert cfg.storage.options["s3"]["secret"] == "s3cr3t"   # used while running
    saved = save_config(cfg, tmp_path / "run").read_text()
    for secret in ("s3cr3t", "AKIA1", "tok"):
        assert secret not in saved and secret not in repr(public(cfg))
    assert yaml.safe_load(saved)["storage"]["options"]["s3"] == {"endpoint_url": "http://minio:9000",
                                                                "client_kwargs": {}}


# --- a real S3 API on loopback -----------------------------------------------------------------

def _upload_shards(smoke: dict, bucket: str) -> str:
    url = storage.join(bucket, "shards")
    if not storage.exists(storage.join(url, "config.yaml")):
        for path in sorted(p for p in smoke["shards"].rglob("*") if p.is_file() and p.name != ".lock"):
            storage.write_bytes(storage.join(url, *path.relative_to(smoke["shards"]).parts), path.read_bytes())
    return url


def test_the_s3_client_takes_its_endpoint_and_credentials_from_the_environment(s3):
    storage.write_text(storage.join(s3, "probe", "hello.txt"), "hi")
    assert storage.read_text(storage.join(s3, "probe", "hello.txt")) == "hi"
    assert [storage.name(p) for p in storage.listdir(storage.join(s3, "probe"))] == ["hello.txt"]


def test_bad_locations_are_one_error_naming_the_url(s3, monkeypatch):
    with pytest.raises(storage.StorageError, match=r"s3://no-such-bucket/shards.*bucket does not exist"):
        storage.check_readable("s3://no-such-bucket/shards")
    with pytest.raises(storage.StorageError, match=r"cannot write to output folder s3://no-such-bucket/run"):
        storage.check_writable("s3://no-such-bucket/run")
    # Denied: moto checks credentials once its no-auth allowance is used up.
    from moto import settings
    with monkeypatch.context() as patch:
        patch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        patch.setitem(storage._options, "s3", {"key": "wrong", "secret": "wrong",
                                               "skip_instance_cache": True})
        with pytest.raises(storage.StorageError, match=rf"{s3}/shards: access denied"):
            storage.check_readable(storage.join(s3, "shards"))
    # Unreachable: an endpoint where nothing listens (the credentials are good).
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setitem(storage._options, "s3", {"skip_instance_cache": True})
    with pytest.raises(storage.StorageError,
                       match=r"s3://any/shards: the storage cannot be reached.*EndpointConnectionError"):
        storage.check_readable("s3://any/shards")


@pytest.mark.slow   # stage 1 through Ray (the shards), then the commands
def test_entry_points_refuse_bad_urls_before_any_work(s3, smoke, capsys, monkeypatch):
    assert train_main(["--shards", "s3://no-such-bucket/shards", "--out", f"{s3}/run-x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "s3://no-such-bucket/shards" in err and "Traceback" not in err
    shards = _upload_shards(smoke, s3)
    assert train_main(["--shards", shards, "--out", "foo://x/run"]) == 2
    assert "foo://x/run: unknown URL scheme 'foo://'" in capsys.readouterr().err
    assert eval_main(["--shards", shards, "--checkpoint", f"{s3}/no-run/checkpoints/last.pt",
                      "--out", "s3://no-such-bucket/eval"]) == 2
    assert f"input not found: {s3}/no-run/checkpoints/last.pt" in capsys.readouterr().err
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setitem(storage._options, "s3", {"skip_instance_cache": True})
    # Keep that option: loading a config would set the options afresh.
    monkeypatch.setattr(storage, "configure", lambda options: None)
    monkeypatch.setattr(storage, "configure_from", lambda cfg: None)
    assert train_main(["--shards", shards, "--out", f"{s3}/run-y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {shards}/config.yaml: the storage cannot be reached") and err.count("\n") == 1


# --- training, evaluation, embed and search on s3:// -----------------------------------------

TRAIN = ["train.num_workers=1", "train.threads=1", "train.steps=4", "train.checkpoint_every=2",
         "train.log_every=1"]


def _state(location) -> dict:
    return load_checkpoint(location, keys=("model", "step", "config"))


@pytest.fixture(scope="module")
def local_run(smoke, tmp_path_factory) -> Path:
    """The reference: the same training on local paths, straight through."""
    run = tmp_path_factory.mktemp("local") / "run"
    run_training(config_for_shards(None, TRAIN, smoke["shards"]), smoke["shards"], run)
    storage.configure(None)
    return run


class Killed(Exception):
    """A training stopped between its steps, as by a crash."""


def _stopping_after(batches: int):
    """train.main's batch stream, cut after ``batches`` batches."""
    import train.main

    def killed():
        raise Killed
        yield

    real = train.main.batch_stream
    return lambda *args, **kwargs: itertools.chain(itertools.islice(real(*args, **kwargs), batches),
                                                   killed())


@pytest.mark.slow   # stage 1 through Ray (the shards), then the commands
def test_training_from_s3_to_s3_resumes_and_equals_the_local_run(s3, smoke, local_run, monkeypatch):
    shards, run = _upload_shards(smoke, s3), f"{s3}/runs/nst"
    # Credentials in the config (moto takes any): used, never written down.
    cfg_args = [*TRAIN, "storage.options.s3.key=cfg-key-id", "storage.options.s3.secret=never-written"]
    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr("train.main.batch_stream", _stopping_after(2))   # dies after step 2's checkpoint
        run_training(config_for_shards(None, cfg_args, shards), shards, run)
    assert _state(last_checkpoint_path(run))["step"] == 2
    summary = run_training(config_for_shards(None, cfg_args, shards), shards, run, resume=True)
    assert summary["start_step"] == 2 and summary["checkpoint"] == f"{run}/checkpoints/last.pt"

    remote, local = _state(f"{run}/checkpoints/last.pt"), _state(last_checkpoint_path(local_run))
    assert remote["step"] == local["step"] == 4
    for key, tensor in local["model"].items():   # the same numbers, bit for bit
        assert torch.equal(remote["model"][key], tensor), key
    # Logs: mirrored up at each checkpoint, fetched and continued on resume.
    logged = [json.loads(line)["step"] for line in
              storage.read_text(f"{run}/metrics.jsonl").splitlines()]
    assert logged == [1, 2, 3, 4]
    assert storage.glob(f"{run}/events.out.tfevents.*")
    assert sorted(storage.name(p) for p in storage.listdir(f"{run}/ranks")) == ["rank-0.json"]
    # No credential in what the run wrote.
    for secret in ("cfg-key-id", "never-written"):
        assert secret not in storage.read_text(f"{run}/config.yaml")
        assert secret not in repr(remote["config"])
    # The run folder's lease: released when each run ended; a live one refuses a training.
    assert not any(storage.name(p) in (".lock", LEASE_NAME) for p in storage.listdir(run))
    storage.write_json(f"{run}/{LEASE_NAME}", {"host": "node-7", "pid": 4242, "run_id": "other",
                                               "command": "train/main.py", "expires": time.time() + 60})
    with pytest.raises(LockedError, match=rf"{run} is in use by another training \(host node-7, pid 4242"):
        run_training(config_for_shards(None, cfg_args, shards), shards, run, resume=True)


def _report(text: str) -> dict:
    report = json.loads(text)
    return {key: report[key] for key in ("models", "chance")}


@pytest.mark.slow   # stage 1 through Ray (the shards), then the commands
def test_evaluation_reads_s3_and_writes_its_report_there_with_the_local_numbers(
        s3, smoke, local_run, tmp_path, capsys):
    shards = _upload_shards(smoke, s3)
    checkpoint = f"{s3}/runs/local/checkpoints/last.pt"
    storage.write_bytes(checkpoint, last_checkpoint_path(local_run).read_bytes())
    common = ["--baselines", "none", "eval.grid_queries=1"]
    assert eval_main(["--shards", str(smoke["shards"]), "--checkpoint",
                      f"nst={last_checkpoint_path(local_run)}", "--out", str(tmp_path / "eval"), *common]) == 0
    assert eval_main(["--shards", shards, "--checkpoint", f"nst={checkpoint}",
                      "--out", f"{s3}/eval", *common]) == 0
    assert f"report: {s3}/eval/report.md" in capsys.readouterr().out
    assert _report(storage.read_text(f"{s3}/eval/report.json")) == \
        _report((tmp_path / "eval" / "report.json").read_text())
    written = {p[len(f"{s3}/eval/"):] for p in storage.glob(f"{s3}/eval/**")}
    assert {"report.md", "config.yaml", "retrieval_grid.png", "style_vs_content.png",
            "embeddings/nst/test-histogram.npz"} <= written


def _script(name: str, args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO_ROOT / "pipeline" / name), *args], env=env,
                            cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow   # stage 1 through Ray (the shards), then the commands
def test_embed_and_search_on_s3_equal_the_local_run(s3, smoke, local_run, ray_env, tmp_path, capsys):
    env = {**ray_env, **{key: os.environ[key] for key in (*S3_ENV, "AWS_ENDPOINT_URL")}}
    styles = smoke["world"] / "styles"
    collection = f"{s3}/collection"
    for path in sorted(styles.rglob("*.png")):
        storage.write_bytes(storage.join(collection, *path.relative_to(styles).parts), path.read_bytes())
    checkpoint = f"{s3}/runs/for-embed/checkpoints/last.pt"
    storage.write_bytes(checkpoint, last_checkpoint_path(local_run).read_bytes())
    common = ["embed.rows_per_file=8", "embed.batch_size=8", "embed.ray.num_actors=1",
              "embed.ray.object_store_mb=80", "--config", str(SMOKE)]
    _script("embed.py", ["--input", str(styles), "--checkpoint", f"nst={last_checkpoint_path(local_run)}",
                         "--out", str(tmp_path / "emb"), *common], env, tmp_path)
    _script("embed.py", ["--input", collection, "--checkpoint", f"nst={checkpoint}",
                         "--out", f"{s3}/emb", *common], env, tmp_path)
    local, remote = read_folder(tmp_path / "emb"), read_folder(f"{s3}/emb")
    assert remote.ids == local.ids and remote.info == local.info and len(local.ids) > 8
    np.testing.assert_array_equal(remote.codes, local.codes)   # the same numbers
    assert remote.paths[0].startswith(f"{collection}/")

    for folder in (str(tmp_path / "emb"), f"{s3}/emb"):
        assert search_main(["build", "--embeddings", folder, "--config", str(SMOKE)]) == 0
    assert storage.is_file(f"{s3}/emb/index/index.faiss") and load_index(f"{s3}/emb/index").ids == local.ids
    query = ["query", "--image", str(sorted(styles.rglob("*.png"))[3]), "--k", "3"]
    hits = []
    for number, index in enumerate((str(tmp_path / "emb" / "index"), f"{s3}/emb/index")):
        assert search_main([*query, "--index", index, "--sheet", str(tmp_path / f"{number}.png")]) == 0
        hits.append([line.split()[:3] for line in capsys.readouterr().out.splitlines()
                     if line.startswith("  ")])
    assert hits[0] == hits[1] and len(hits[0]) == 3 and hits[0][0][1] == "1.0000"
