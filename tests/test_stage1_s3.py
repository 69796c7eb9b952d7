"""Stage 1 writing to object storage: a real S3 API (moto's server on loopback, s3fs as the
client, credentials from the environment). The shards match a local run's byte for byte; kills
at each step of a shard's publication are finished by a rerun with every planned sample once;
the folder's lease refuses a second run; a bad ``--out`` is refused before any work; a two-node
Ray cluster on this machine runs the actors on the node the config names. The runs through Ray
are marked slow."""
from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from common import storage
from common.config import RESOLVED_NAME, load_config
from common.lease import LEASE_NAME
from conftest import REPO_ROOT, S3_ENV, SMOKE, ray_subprocess_env
from faults.sitecustomize import fault_env
from ray_cluster import LocalRayCluster
from pipeline.runner import plan_inputs
from pipeline.stylize import main as stylize_main
from shards.reader import complete_shards, incomplete_shards
from shards.schema import sample_key, shard_number

SCRIPT = REPO_ROOT / "pipeline" / "stylize.py"
RUN_FILES = {"config.yaml", "_stage1.json"}
SPLIT_FILES = {"_info.json"}


def stage1(out: str, smoke: dict, env: dict, *overrides: str) -> subprocess.CompletedProcess:
    """The smoke config's stage 1 on the smoke fixture's world, as a user runs it."""
    return subprocess.run([sys.executable, str(SCRIPT), "--config", str(SMOKE), "--out", out,
                           f"world.dir={smoke['world']}", *overrides], cwd=smoke["root"], env=env,
                          capture_output=True, text=True, timeout=300)


def tree(location: str | Path) -> dict[str, bytes]:
    """Every file under a folder or prefix, by relative path (the local lock file aside)."""
    return {rel: storage.read_bytes(found) for rel, found in storage.find(location) if rel != ".lock"}


def comparable(rel: str, data: bytes) -> object:
    """A file's content as the comparison sees it: parquet as rows, a stats file without its
    timing, the recorded config without how Ray ran (``stylize.ray``); everything else as
    bytes."""
    if rel == RESOLVED_NAME:
        cfg = yaml.safe_load(data)
        cfg["stylize"].pop("ray")
        return cfg
    if rel.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data)).to_pylist()
    if rel.endswith(".stats.json"):
        return {k: v for k, v in json.loads(data).items() if k != "seconds"}
    return data


def assert_same_shards(local: dict[str, bytes], remote: dict[str, bytes]) -> None:
    assert sorted(remote) == sorted(local)
    for rel in local:
        assert comparable(rel, remote[rel]) == comparable(rel, local[rel]), rel


def assert_only_final_names(files: dict[str, bytes]) -> None:
    """Nothing under the output prefix but the run's files and shards' final names: no
    temporary object, no lease left behind."""
    for rel in files:
        folder, _, name = rel.rpartition("/")
        assert (name in RUN_FILES if not folder else
                name in SPLIT_FILES or shard_number(name) is not None), rel
        assert not name.endswith(".tmp") and name != LEASE_NAME, rel


def planned_items(smoke: dict) -> set[tuple[str, str, int]]:
    plan, _ = plan_inputs(load_config(str(SMOKE), [f"world.dir={smoke['world']}"]))
    return {(s.split, g.style_id, i.index) for s in plan.shards for g in s.groups for i in g.items}


def assert_each_planned_sample_once(out: str, planned: set[tuple[str, str, int]]) -> None:
    """Read back from the store: every tar member of every shard, each planned stylization
    once and each sample once."""
    images, samples = Counter(), Counter()
    for split in {split for split, _, _ in planned}:
        for tar in storage.glob(storage.join(out, split, "shard-*.tar")):
            with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(tar))) as archive:
                for name in archive.getnames():
                    key, _, member = name.partition(".")
                    samples[(split, key)] += member == "json"
                    if member.startswith("x"):
                        images[(split, key[1:], int(member[1:].split(".")[0]))] += 1
    assert set(images) == planned and set(images.values()) == {1}
    assert set(samples) == {(split, sample_key(style)) for split, style, _ in planned}
    assert set(samples.values()) == {1}


@pytest.mark.slow
def test_stage1_on_s3_writes_the_shards_of_a_local_run_byte_for_byte(s3, smoke):
    out = storage.join(s3, "shards-identical")
    result = stage1(out, smoke, ray_subprocess_env(smoke["root"]))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"-> {out}" in result.stdout
    remote = tree(out)
    assert_same_shards(tree(smoke["shards"]), remote)
    assert_only_final_names(remote)


KILLS = {"exit-mid-shard": "train/shard-000000",      # the tar half-written (a local temporary)
         "exit-before-tar": "test-colour/shard-000000",   # the index published, not the tar
         "exit-before-stats": "crops/shard-000000"}       # tar and index published, not the stats


@pytest.mark.slow
def test_kills_at_each_step_of_a_shards_publication_then_a_rerun(s3, smoke):
    """Actors exit abruptly (as kill -9) at three moments, one shard each, with no retry: the
    run gives those shards up; what it left on the store is never read as a complete shard;
    a rerun redoes exactly them and every planned sample is there once."""
    out = storage.join(s3, "shards-killed")
    faults = ",".join(f"{kind}:{shard}" for kind, shard in KILLS.items())
    first = stage1(out, smoke, fault_env(ray_subprocess_env(smoke["root"]), faults),
                   "stylize.ray.shard_retries=0")
    assert first.returncode == 1, first.stderr[-3000:]
    left = tree(out)
    assert sorted(json.loads(left.pop("_failures.json"))["failed"]) == sorted(KILLS.values())
    assert_only_final_names(left)
    published = {kind: {rel.removeprefix(shard) for rel in left if rel.startswith(shard + ".")}
                 for kind, shard in KILLS.items()}
    assert published == {"exit-mid-shard": set(), "exit-before-tar": {".parquet"},
                         "exit-before-stats": {".parquet", ".tar"}}
    for kind in ("exit-before-tar", "exit-before-stats"):   # counted incomplete, never read
        split = KILLS[kind].split("/")[0]
        assert incomplete_shards(storage.join(out, split)) == [storage.join(out, KILLS[kind] + ".tar")]
        assert storage.join(out, KILLS[kind] + ".tar") not in complete_shards(storage.join(out, split))

    again = stage1(out, smoke, ray_subprocess_env(smoke["root"]))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "8 already complete, 3 to do" in again.stdout
    assert_only_final_names(tree(out))
    assert_each_planned_sample_once(out, planned_items(smoke))


def _small_overrides(manifests: tuple[Path, Path]) -> list[str]:
    content, style = manifests
    return [f"data.content_manifest={content}", f"data.style_manifest={style}"]


def test_a_live_lease_on_the_output_refuses_a_second_run_naming_its_owner(s3, small_manifests, capsys):
    out = storage.join(s3, "shards-leased")
    storage.write_json(storage.join(out, LEASE_NAME),
                       {"host": "node-7", "pid": 4242, "run_id": "other", "command": "stylize.py",
                        "ttl_s": 60, "expires": time.time() + 60})
    assert stylize_main(["--out", out, *_small_overrides(small_manifests)]) == 2
    err = capsys.readouterr().err
    assert f"{out} is in use by another stage-1 run (host node-7, pid 4242: stylize.py)" in err
    assert [storage.name(p) for p in storage.listdir(out)] == [LEASE_NAME]   # nothing written


@pytest.mark.slow
def test_manifests_and_images_on_s3(s3, small_manifests, ray_env, tmp_path):
    """Stage 1 with nothing local: manifests on the bucket, their rows relative to them, the
    actors reading the images from it."""
    inputs = storage.join(s3, "inputs")
    storage.upload(small_manifests[0].parent, inputs)
    out = storage.join(s3, "shards-from-s3")
    env = {**ray_env, **{key: os.environ[key] for key in (*S3_ENV, "AWS_ENDPOINT_URL")}}
    result = subprocess.run([sys.executable, str(SCRIPT), "--config", str(SMOKE), "--out", out,
                             f"data.content_manifest={inputs}/content.parquet",
                             f"data.style_manifest={inputs}/style.parquet"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"24 contents from {inputs}/content.parquet" in result.stdout
    info = json.loads(storage.read_text(storage.join(out, "train", "_info.json")))
    assert info["images"] > 0 and info["failed"] == 0


@pytest.mark.parametrize("out, message", [
    ("foo://bucket/shards", "foo://bucket/shards: unknown URL scheme 'foo://'"),
    ("s3://no-such-bucket/shards", "cannot write to output folder s3://no-such-bucket/shards"),
])
def test_a_bad_output_url_is_refused_before_any_work(s3, small_manifests, capsys, out, message):
    assert stylize_main(["--out", out, *_small_overrides(small_manifests)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert "[stage1]" not in captured.out   # not even the manifests were read


@pytest.mark.slow
def test_stage1_on_a_two_node_cluster_runs_its_actors_on_the_named_node(s3, smoke, tmp_path):
    """Actors need the custom resource only the worker node has (``stylize.ray.actor_resources``):
    every shard is written by a process of that node (only its environment logs shards), to
    s3://, and the shards are those of the one-node local run."""
    log = tmp_path / "log"
    log.mkdir()
    env = {**ray_subprocess_env(smoke["root"]), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    out = storage.join(s3, "shards-two-node")
    with LocalRayCluster(env, fault_env(env, log=log)) as address:
        result = stage1(out, smoke, env, f"stylize.ray.address={address}", "stylize.ray.num_actors=1",
                        "stylize.ray.actor_resources={worker_node: 1}")
    assert result.returncode == 0, result.stderr[-3000:]
    logged = sorted(shard for f in log.iterdir() for shard in f.read_text().split())
    assert len(logged) == 11 and len(set(logged)) == 11
    assert_same_shards(tree(smoke["shards"]), tree(out))
