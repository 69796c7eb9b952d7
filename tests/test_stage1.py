"""Stage 1 end to end: real files, real Ray (local, bounded), real shards."""
import json
import os
import tarfile
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from common.config import load_config, save_config
from common.files import FolderLock
from faults.sitecustomize import fault_env
from ray_cluster import LocalRayCluster
from shards.manifest import read_content_manifest, read_style_manifest
from pipeline.plan import make_plan
from shards.reader import complete_shards, incomplete_shards, read_index, read_info
from shards.schema import sample_key, shard_paths

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "pipeline" / "stylize.py"


def _overrides(content, style, **extra):
    base = {"data.content_manifest": content, "data.style_manifest": style,
            "stylize.image_size": 32, "stylize.style_image_size": 32, "stylize.crops_size": 16,
            "stylize.train_methods": "[colour,whitening]", "stylize.held_out": "histogram",
            "stylize.test_fraction": 0.34, "stylize.styles_per_shard": 2,
            "stylize.train_contents_per_style": 3, "stylize.test_contents_per_style": 3,
            "stylize.ray.num_actors": 2, "stylize.ray.object_store_mb": 80,
            "stylize.ray.batch_size": 2}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _run(out, overrides, env, cwd, **kwargs):
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *overrides],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def _planned(overrides):
    cfg = load_config(None, overrides)
    plan = make_plan(read_content_manifest(cfg.data.content_manifest),
                     read_style_manifest(cfg.data.style_manifest), cfg, cfg.seed)
    return {(s.split, g.style_id, i.index) for s in plan.shards for g in s.groups for i in g.items}


def _written(out):
    found = []
    for split in sorted(p.name for p in out.iterdir() if p.is_dir()):
        table = read_index(out / split).to_pylist()
        found += [(r["split"], r["style_id"], r["index"]) for r in table if r["status"] == "ok"]
    return found


@pytest.mark.slow
def test_run_from_another_directory_with_bad_images_then_rerun_skips(small_manifests, ray_env,
                                                                      tmp_path):
    content, style = small_manifests
    overrides = _overrides(content, style)
    cfg = load_config(None, overrides)
    plan = make_plan(read_content_manifest(content), read_style_manifest(style), cfg, cfg.seed)
    bad_content = plan.shards[0].groups[0].items[0].content_id      # an unreadable content image
    bad_style = plan.shards[0].groups[1].style_id                     # an unreadable style image
    (content.parent / "content" / f"content{bad_content[1:]}.jpg").write_bytes(b"not a jpeg")
    (style.parent / "style" / f"style{bad_style[1:]}.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "shards"
    result = _run(out, overrides, ray_env, cwd=tmp_path)  # cwd is not the repo root
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shards |" in result.stdout and "samples/s" in result.stdout

    splits = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert splits == ["crops", "test-colour", "test-histogram", "test-whitening", "train"]
    for split in splits:
        info = read_info(out / split)
        samples = list(wds.WebDataset(complete_shards(out / split), shardshuffle=False))
        assert len(samples) == info["samples"] > 0
        images = sum(k.startswith("x") for s in samples for k in s)
        assert images == info["images"]
    assert (out / "config.yaml").exists()

    # Unreadable images are recorded with their reason wherever they were planned.
    rows = [r for split in splits for r in read_index(out / split).to_pylist()]
    failed = [r for r in rows if r["status"] == "failed"]
    by_style = [r for r in failed if r["style_id"] == bad_style]
    assert len(by_style) == 3 and all("style" in r["reason"] for r in by_style)
    by_content = [r for r in failed if r["style_id"] != bad_style]
    assert by_content and all(r["content_id"] == bad_content and "content" in r["reason"]
                              for r in by_content)
    assert sorted(_written(out)) == sorted(p for p in _planned(overrides)
                                           if (p[0], p[1], p[2]) not in
                                           {(r["split"], r["style_id"], r["index"]) for r in failed})
    assert f"{len(failed)} failed" in result.stdout

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")}
    again = _run(out, overrides, ray_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already complete, 0 to do" in again.stdout
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")}


def _slow_run_until(small_manifests, ray_env, tmp_path, shards_done: int
                    ) -> tuple[subprocess.Popen, Path, list[str]]:
    """Stage 1 as a subprocess of its own process group, slowed down (gram optimisation, one
    actor) so that a signal sent once ``shards_done`` shards are complete lands half-way."""
    content, style = small_manifests
    overrides = _overrides(content, style, **{"stylize.train_methods": "[gram]",
                                              "stylize.ray.num_actors": 1})
    out = tmp_path / "shards"
    # As from a terminal: Ctrl-C reaches the run even where the test itself was started in the
    # background of a script (which leaves SIGINT ignored, and Python keeps an ignored SIGINT).
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--out", str(out), *overrides],
                            cwd=tmp_path, env=ray_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("*/*.stats.json"))) < shards_done:
        time.sleep(0.2)
    return proc, out, overrides


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_the_plan(small_manifests, ray_env, tmp_path):
    proc, out, overrides = _slow_run_until(small_manifests, ray_env, tmp_path, 2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
    proc.wait()
    done_before = len(list(out.glob("*/*.stats.json")))
    assert 2 <= done_before < 7, "the kill should land half-way through the run"
    assert not list(out.glob("*/_info.json"))

    result = _run(out, overrides, ray_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    plan_line = next(line for line in result.stdout.splitlines() if "already complete" in line)
    skipped = int(plan_line.split("; ")[1].split()[0])
    # An actor may still publish the shard it was writing as the cluster goes down.
    assert done_before <= skipped < 7, plan_line
    written = _written(out)
    assert len(written) == len(set(written))            # nothing twice
    assert set(written) == _planned(overrides)          # nothing missing
    assert not list(out.glob("*/.*.tmp"))               # no leftovers
    for tar in out.glob("*/*.tar"):                     # every tar under a final name is complete
        assert tar.with_suffix(".stats.json").exists() or tar.name.startswith(".")


def test_changed_config_refuses_to_mix_plans(small_manifests, ray_env, tmp_path):
    content, style = small_manifests
    out = tmp_path / "shards"
    out.mkdir()
    (out / "_stage1.json").write_text(json.dumps({"plan_digest": "something-else"}))
    result = _run(out, _overrides(content, style), ray_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "different plan" in result.stderr


def test_a_folder_of_other_pixels_is_refused_by_key(small_manifests, ray_env, tmp_path):
    """Same plan, other config (how images become square): not resumable into one folder."""
    content, style = small_manifests
    out = tmp_path / "shards"
    save_config(load_config(None, _overrides(content, style)), out)
    result = _run(out, _overrides(content, style, **{"stylize.square": "pad"}), ray_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "holds shards made with stylize.square='crop', not 'pad'" in result.stderr


def test_bad_manifest_fails_before_any_work(small_manifests, ray_env, tmp_path):
    content, style = small_manifests
    table = pq.read_table(style).drop(["path"])
    pq.write_table(table, style)
    result = _run(tmp_path / "shards", _overrides(content, style), ray_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "style.parquet: missing column(s) ['path']" in result.stderr
    assert not (tmp_path / "shards").exists()


def test_gpu_request_without_gpus_is_refused(small_manifests, ray_env, tmp_path):
    content, style = small_manifests
    result = _run(tmp_path / "shards",
                  _overrides(content, style, **{"stylize.ray.num_gpus_per_actor": 1}),
                  ray_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "The cluster has no GPUs: set stylize.ray.num_gpus_per_actor=0" in result.stderr


def test_script_imports_the_stylize_package_not_itself(tmp_path):
    for cwd in (REPO, tmp_path):
        result = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=cwd,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "Stage 1" in result.stdout
    probe = (f"import sys, importlib.util; sys.path.insert(0, {str(REPO / 'pipeline')!r}); "
             "print(importlib.util.find_spec('stylize').origin)")
    shadowed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert shadowed.stdout.strip().endswith("pipeline/stylize.py"), "the guarded clash is real"


@pytest.mark.slow
def test_ray_job_submit_against_a_local_head(small_manifests, ray_env, tmp_path):
    content, style = small_manifests
    ray = str(Path(sys.executable).with_name("ray"))
    # Ray's head requires token authentication: the head, the CLI and the job share one token.
    ray_env = {**ray_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    # Its own ports and temp folder, stopped by pid: never ``ray stop``, which stops every cluster.
    head = LocalRayCluster(ray_env, dashboard=True, num_cpus=2, object_store_bytes=100_000_000)
    with head:
        out = tmp_path / "job-shards"
        submit = [ray, "job", "submit", f"--address={head.dashboard}", f"--working-dir={REPO}",
                  "--", sys.executable, "pipeline/stylize.py", "--out", str(out),
                  *_overrides(content, style)]
        # The head's job agent starts after `ray start` returns, later on a loaded machine: until
        # then the dashboard answers "No available agent" and asks to try again.
        for _ in range(6):
            job = subprocess.run(submit, env=ray_env, capture_output=True, text=True, timeout=400)
            if "No available agent" not in job.stderr:
                break
            time.sleep(10)
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "succeeded" in job.stdout
    assert read_info(out / "train")["samples"] > 0


def test_the_pretrained_network_runs_through_stage1_with_a_variant_held_out(small_manifests, ray_env,
                                                                            tmp_path):
    """Magenta's network in Ray actors; a second entry of the same network with other options
    (``method: magenta``) is held out; shard metadata records the weights and the network."""
    content, style = small_manifests
    overrides = _overrides(content, style, **{
        "stylize.methods.magenta": "{work_size: 64}",
        "stylize.methods.magenta_coarse": "{method: magenta, work_size: 32}",
        "stylize.train_methods": "[magenta]", "stylize.held_out": "magenta_coarse",
        "stylize.strength": "[0.5,1.0]"})
    out = tmp_path / "shards"
    result = _run(out, overrides, ray_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(_written(out)) == sorted(_planned(overrides))   # nothing failed, nothing doubled
    held_out = read_info(out / "test-magenta_coarse")
    assert held_out["role"] == "held_out" and held_out["networks"] == {"magenta_coarse": "magenta"}
    assert read_info(out / "test-magenta")["role"] == "test"
    assert read_info(out / "train")["role"] == "train"
    params = [json.loads(r["params"]) for r in read_index(out / "test-magenta_coarse").to_pylist()]
    assert {p["work_size"] for p in params} == {32} and {p["strength"] for p in params} <= {0.5, 1.0}
    assert all(p["transform_model"] == "arbitrary_transform.onnx" and len(p["predict_sha256"]) == 16
               for p in params)


def test_an_entry_naming_an_unknown_network_is_refused_before_ray(small_manifests, ray_env, tmp_path):
    content, style = small_manifests
    overrides = _overrides(content, style, **{"stylize.methods.fancy": "{method: nosuch}",
                                              "stylize.held_out": "fancy"})
    result = _run(tmp_path / "shards", overrides, ray_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown NST method 'nosuch' (stylize.methods.fancy)" in result.stderr
    assert "Started a local Ray" not in result.stderr + result.stdout


def test_a_second_run_on_a_folder_in_use_is_refused(small_manifests, ray_env, tmp_path):
    content, style = small_manifests
    out = tmp_path / "shards"
    with FolderLock(out, "stage-1 run"):   # a live run holds the folder
        result = _run(out, _overrides(content, style), ray_env, cwd=tmp_path)
    assert result.returncode == 2
    assert f"{out} is in use by another stage-1 run (pid {os.getpid()}" in result.stderr
    assert not list(out.glob("*/shard-*"))


def test_more_actors_than_the_cluster_can_place_are_refused_before_any_shard(small_manifests,
                                                                             ray_env, tmp_path):
    content, style = small_manifests
    out = tmp_path / "shards"
    # No node offers the resource: the actor (and the shard handed to it) would wait forever.
    overrides = _overrides(content, style, **{"stylize.ray.actor_resources": "{stage1: 1}"})
    result = _run(out, overrides, ray_env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert ("stylize.ray.num_actors=2 actors of 1 CPU, 1 stage1 each, but the Ray cluster's "
            "nodes hold 0") in result.stderr
    assert not list(out.glob("*/shard-*"))


@pytest.mark.slow
def test_a_complete_shard_that_lost_its_index_is_redone(small_manifests, ray_env, tmp_path):
    content, style = small_manifests
    overrides = _overrides(content, style)
    out = tmp_path / "shards"
    first = _run(out, overrides, ray_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    total = len(_planned_by_shard(overrides))
    index = out / "train" / "shard-000000.parquet"
    index.unlink()                                   # its tar and stats file stay
    tar = out / "train" / "shard-000000.tar"
    before = tar.stat().st_mtime_ns
    again = _run(out, overrides, ray_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{total - 1} already complete, 1 to do" in again.stdout
    assert index.is_file() and tar.stat().st_mtime_ns != before
    written = _written(out)
    assert len(written) == len(set(written)) and set(written) == _planned(overrides)
    assert read_info(out / "train")["shards"] == sorted(p.name for p in (out / "train").glob("*.tar"))


@pytest.mark.slow
def test_ctrl_c_exits_130_and_a_rerun_finishes(small_manifests, ray_env, tmp_path):
    proc, out, overrides = _slow_run_until(small_manifests, ray_env, tmp_path, 1)
    os.killpg(proc.pid, signal.SIGINT)   # as Ctrl-C in a terminal: the whole process group
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-3000:]
    assert "[stage1] interrupted; rerun to finish" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    done_before = len(list(out.glob("*/*.stats.json")))
    total = len(_planned_by_shard(overrides))
    assert 1 <= done_before < total, "the interrupt should land half-way through the run"
    assert not list(out.glob("*/_info.json"))

    result = _run(out, overrides, ray_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    plan_line = next(line for line in result.stdout.splitlines() if "already complete" in line)
    skipped = int(plan_line.split("; ")[1].split()[0])
    # Completed shards stayed complete (an actor may still publish the one it was writing).
    assert done_before <= skipped < total, plan_line
    written = _written(out)
    assert len(written) == len(set(written))            # nothing twice
    assert set(written) == _planned(overrides)          # nothing missing
    assert not list(out.glob("*/.*.tmp"))               # no leftovers


def test_a_read_only_output_folder_is_one_line_and_exit_2(small_manifests, read_only_folder,
                                                          capsys):
    from pipeline.stylize import main

    content, style = small_manifests
    assert main(["--out", str(read_only_folder), *_overrides(content, style)]) == 2
    err = capsys.readouterr().err
    reason = "read-only file system" if os.geteuid() == 0 else "permission denied"
    assert err == f"[stage1] error: cannot write to {read_only_folder}: {reason}\n"
    assert list(read_only_folder.iterdir()) == []


def _planned_by_shard(overrides):
    cfg = load_config(None, overrides)
    plan = make_plan(read_content_manifest(cfg.data.content_manifest),
                     read_style_manifest(cfg.data.style_manifest), cfg, cfg.seed)
    return {f"{s.split}/shard-{s.number:06d}": {(s.split, g.style_id, i.index) for g in s.groups
                                                for i in g.items} for s in plan.shards}


def _tar_samples(out: Path) -> tuple[Counter, Counter]:
    """What the tars under their final names hold, read from their members themselves: per
    (split, sample key) the number of json members, and per (split, style id, index) the
    number of stylization members."""
    samples, images = Counter(), Counter()
    for tar in out.glob("*/shard-*.tar"):
        with tarfile.open(tar) as archive:
            for name in archive.getnames():
                key, _, member = name.partition(".")
                if member == "json":
                    samples[tar.parent.name, key] += 1
                elif member.startswith("x"):
                    images[tar.parent.name, key[1:], int(member[1:].removesuffix(".jpg"))] += 1
    return samples, images


def _assert_each_planned_sample_once(out: Path, overrides: list[str]) -> None:
    samples, images = _tar_samples(out)
    planned = _planned(overrides)
    assert set(images) == planned and set(images.values()) == {1}     # nothing lost, nothing twice
    assert set(samples) == {(split, sample_key(style)) for split, style, _ in planned}
    assert set(samples.values()) == {1}
    written = _written(out)                                          # and the indexes agree
    assert len(written) == len(set(written)) and set(written) == planned
    assert not list(out.glob("*/.*.tmp")) and not (out / "_failures.json").exists()


def _shards_by_pid(log: Path) -> dict[int, list[str]]:
    """The shards each actor process wrote (the fault module's NSTSTYLE_FAULT_LOG)."""
    return {int(f.name): f.read_text().split() for f in log.iterdir()}


@pytest.mark.slow
def test_a_killed_actor_is_replaced_and_the_replacement_writes_the_shards(small_manifests, ray_env,
                                                                          tmp_path):
    content, style = small_manifests
    overrides = _overrides(content, style, **{"stylize.ray.num_actors": 1})
    once, log = tmp_path / "once", tmp_path / "log"
    once.mkdir(), log.mkdir()
    # The one actor exits while train/shard-000000's first group is in its temporary tar, on
    # the first attempt only.
    env = fault_env(ray_env, "exit-mid-shard:train/shard-000000", once=once, log=log)
    out = tmp_path / "shards"
    result = _run(out, overrides, env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    dead = int((once / "fired").read_text())
    assert "train/shard-000000 attempt 1 failed (actor died" in result.stderr
    assert "started a replacement for a dead actor (restart 1 of stylize.ray.max_restarts=3)" \
        in result.stderr
    by_pid = _shards_by_pid(log)
    # Only the replacement, a new process, wrote shards after the death: the dead actor had
    # written none (its first shard was the one it died on) and every shard is written once.
    assert dead not in by_pid and len(by_pid) == 1
    [replacement_shards] = by_pid.values()
    assert sorted(replacement_shards) == sorted(_planned_by_shard(overrides))
    _assert_each_planned_sample_once(out, overrides)
    assert read_info(out / "train")["samples"] == len({k for sp, k in _tar_samples(out)[0] if sp == "train"})


def test_used_up_restarts_are_a_clear_error_and_a_rerun_finishes(small_manifests, ray_env, tmp_path):
    content, style = small_manifests
    overrides = _overrides(content, style, **{"stylize.ray.num_actors": 1,
                                              "stylize.ray.max_restarts": 1,
                                              "stylize.ray.shard_retries": 2})
    log = tmp_path / "log"
    log.mkdir()
    # Every actor that writes train/shard-000000 dies: the first actor (train/shard-000000 is
    # the first shard), then its one replacement, which first writes every other shard (a
    # failed shard goes to the back of the queue).
    env = fault_env(ray_env, "exit-mid-shard:train/shard-000000", log=log)
    out = tmp_path / "shards"
    result = _run(out, overrides, env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "an actor died 2 times; continuing without it" in result.stderr
    assert ("1 shard(s) failed, the others are complete: train/shard-000000 (no actor left "
            "(stylize.ray.max_restarts=1 used up))") in result.stderr
    assert json.loads((out / "_failures.json").read_text())["failed"] == {
        "train/shard-000000": "no actor left (stylize.ray.max_restarts=1 used up)"}
    [replacement_shards] = _shards_by_pid(log).values()
    others = sorted(set(_planned_by_shard(overrides)) - {"train/shard-000000"})
    assert sorted(replacement_shards) == others
    assert not shard_paths(out / "train", 0)["tar"].exists() and not list(out.glob("*/_info.json"))

    again = _run(out, overrides, ray_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(others)} already complete, 1 to do" in again.stdout
    _assert_each_planned_sample_once(out, overrides)


@pytest.mark.parametrize("finish", ["retry", "rerun"])
def test_a_kill_between_a_tars_publication_and_its_stats_file(small_manifests, ray_env, tmp_path,
                                                             finish):
    """The shard's tar and index are under their final names, its stats file is not: a retry
    in the same run, or a rerun of the command, rewrites it, and every sample is there once."""
    content, style = small_manifests
    retries = 1 if finish == "retry" else 0
    overrides = _overrides(content, style, **{"stylize.ray.shard_retries": retries})
    once = tmp_path / "once"
    once.mkdir()
    target = "test-colour/shard-000000"
    env = fault_env(ray_env, f"exit-before-stats:{target}", once=once)
    out = tmp_path / "shards"
    result = _run(out, overrides, env, cwd=tmp_path)
    assert (once / "fired").exists(), "the actor never died"
    assert f"{target} attempt 1 failed (actor died" in result.stderr or \
        f"{target} failed after 1 attempts: actor died" in result.stderr, result.stderr[-3000:]
    if finish == "rerun":
        assert result.returncode == 1, result.stderr[-3000:]
        paths = shard_paths(out / "test-colour", 0)
        assert paths["tar"].is_file() and paths["index"].is_file() and not paths["stats"].exists()
        assert incomplete_shards(out / "test-colour") == [str(paths["tar"])]
        again = _run(out, overrides, ray_env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"{len(_planned_by_shard(overrides)) - 1} already complete, 1 to do" in again.stdout
    else:
        assert result.returncode == 0, result.stderr[-3000:]
    _assert_each_planned_sample_once(out, overrides)


@pytest.mark.slow
def test_a_shard_that_keeps_failing_is_named_and_a_rerun_completes_it(small_manifests, ray_env,
                                                                     tmp_path):
    content, style = small_manifests
    overrides = _overrides(content, style, **{"stylize.ray.shard_retries": 1})
    out = tmp_path / "shards"
    (out / "test-colour" / "shard-000000.tar").mkdir(parents=True)   # every publish raises
    # Every attempt of the last planned shard kills its actor (the last: the run need not wait
    # for a fresh actor to start).
    env = fault_env(ray_env, "exit-mid-shard:crops/shard-000001")
    result = _run(out, overrides, env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "2 shard(s) failed" in result.stderr
    assert "test-colour/shard-000000 (IsADirectoryError" in result.stderr
    assert "crops/shard-000001 (actor died" in result.stderr
    assert "crops/shard-000001 failed after 2 attempts" in result.stderr
    failed = json.loads((out / "_failures.json").read_text())["failed"]
    assert sorted(failed) == ["crops/shard-000001", "test-colour/shard-000000"]
    planned = _planned_by_shard(overrides)
    others = set().union(*(items for name, items in planned.items() if name not in failed))
    written = _written(out)
    assert len(written) == len(set(written)) and set(written) == others   # the others completed
    assert not list(out.glob("*/_info.json")) and not list(out.glob("*/.*.tmp"))

    (out / "test-colour" / "shard-000000.tar").rmdir()
    again = _run(out, overrides, ray_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(planned) - 2} already complete, 2 to do" in again.stdout
    written = _written(out)
    assert len(written) == len(set(written)) and set(written) == _planned(overrides)
    assert not (out / "_failures.json").exists() and read_info(out / "train")["samples"] > 0
