"""Training end to end on real tar shards: torchrun with two gloo ranks on uneven shards,
NaN stop keeping the last good checkpoint, exact resume, the data stream's guarantees, damaged
shards and checkpoints, and the TensorBoard scalars."""
import json
import shutil
import signal
import time
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import DEFAULT_CONFIG, load_config
from common.files import FolderLock, LockedError
from faults.sitecustomize import fault_env
from models.checkpoint import load_encoder
from shard_factory import make_split
from shards.reader import ShardError, raw_samples
from train.checkpoint import last_checkpoint_path
from train.data import (StyleBatches, batch_iterator, batch_stream, label_id, pair_groups,
                        train_shards)
from train.main import MetricsLog, error_text, main, run_training

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
CONFIG = ["--config", str(DEFAULT_CONFIG)]   # the config the factory records with its shards
TINY = ["train.image_size=32", "train.model.vit.name=vit_tiny_patch16_224", "train.model.vit.patch_size=8",
        "train.model.vgg.max_layer=relu2_1", "train.styles_per_batch=3", "train.images_per_style=2",
        "train.threads=1", "train.log_every=2", "train.warmup_steps=2", "train.shuffle_buffer=4",
        "train.model.style_net.style_size=32"]


def tiny_cfg(*overrides: str) -> dict:
    return load_config(None, TINY + list(overrides))


@pytest.fixture(scope="module")
def uneven_shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    make_split(root, "train", n_styles=10, per_style=3, size=32, styles_per_shard=4)  # 4 + 4 + 2
    return root


def torchrun(shards: Path, out: Path, *extra: str, fault: str | None = None) -> subprocess.CompletedProcess:
    """Two gloo ranks; ``fault`` is one of tests/faults/sitecustomize.py's, in every rank."""
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "train/main.py", *CONFIG,
               "--shards", str(shards), "--out", str(out), *extra, *TINY,
               "train.num_workers=1", "train.steps=6", "train.checkpoint_every=2"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240,
                          env=fault_env(dict(os.environ), fault))


def rank_steps(run: Path) -> list[int]:
    return [json.loads((run / "ranks" / f"rank-{r}.json").read_text())["steps"] for r in (0, 1)]


@pytest.mark.slow
def test_torchrun_uneven_shards_nan_stop_and_exact_resume(uneven_shards, tmp_path):
    straight = torchrun(uneven_shards, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert rank_steps(tmp_path / "straight") == [6, 6]
    logged = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 4, 6]
    assert all({"loss", "lr", "samples_per_s", "eta_s"} <= r.keys() for r in logged)
    encoder, cfg = load_encoder(tmp_path / "straight" / "checkpoints" / "last.pt")
    assert cfg["train"]["steps"] == 6 and encoder(torch.rand(2, 3, 32, 32)).shape == (2, 128)

    # A NaN at step 5 stops both ranks; the checkpoint of step 4 stays as it was.
    interrupted = tmp_path / "interrupted"
    stopped = torchrun(uneven_shards, interrupted, fault="nan-batch:5")
    assert stopped.returncode != 0
    assert "non-finite loss" in stopped.stderr and "at step 5" in stopped.stderr
    saved = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == 4 and saved["data_position"]["batches"] == 4
    assert not list((interrupted / "checkpoints").glob("*.tmp"))

    # Resuming from step 4 ends exactly where the uninterrupted run did.
    resumed = torchrun(uneven_shards, interrupted, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert '"start_step": 4' in resumed.stdout
    final = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=True)
    reference = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    assert final["step"] == 6
    # Bit for bit: weights, optimizer moments and step counts, schedule, data position, config.
    assert_same_state(final, reference)


def assert_same_state(got, expected, where: str = "checkpoint") -> None:
    """``got`` equals ``expected`` exactly: nested dicts and lists, tensors by torch.equal."""
    if isinstance(expected, torch.Tensor):
        same = torch.equal(got, expected)
        assert same, f"{where}: differs, by up to {(got - expected).abs().max().item():.3g}"
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key, value in expected.items():
            assert_same_state(got[key], value, f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for i, value in enumerate(expected):
            assert_same_state(got[i], value, f"{where}[{i}]")
    else:
        assert got == expected, where


def test_no_nst_mode_with_two_view_term_trains_in_process(tmp_path):
    shards = tmp_path / "shards"
    make_split(shards, "train", n_styles=12, per_style=2, size=32, styles_per_shard=6, styles_per_group=3)
    cfg = tiny_cfg("train.mode=no_nst", "train.ss_weight=0.5", "train.num_workers=0",
                   "train.steps=2", "train.checkpoint_every=1")
    batch = next(batch_iterator(shards, cfg.train, 0, rank=0, world_size=1))
    assert batch["images"].shape == batch["views"].shape == (6, 3, 32, 32)
    groups = batch["labels"].view(3, 2)
    assert (groups[:, 0] == groups[:, 1]).all() and len(set(groups[:, 0].tolist())) == 3
    assert set(groups[:, 0].tolist()) <= {label_id(f"g{i}") for i in range(4)}
    summary = run_training(cfg, shards, tmp_path / "run")
    assert summary["steps"] == 2 and summary["final_loss"] > 0
    assert (tmp_path / "run" / "config.yaml").exists() and Path(summary["checkpoint"]).exists()


def test_stream_is_a_function_of_its_position(uneven_shards):
    cfg = tiny_cfg("train.num_workers=0").train
    from_start = iter(StyleBatches(train_shards(uneven_shards), cfg, seed=0, rank=0, world_size=1))
    batches = [next(from_start) for _ in range(5)]
    resumed = next(iter(StyleBatches(train_shards(uneven_shards), cfg, seed=0, rank=0, world_size=1,
                                     start_batch=4)))
    assert torch.equal(resumed["images"], batches[4]["images"])
    assert torch.equal(resumed["labels"], batches[4]["labels"])
    # Each group: K stylizations then its style image, all with one label.
    assert batches[0]["images"].shape == (9, 3, 32, 32)
    assert (batches[0]["labels"].view(3, 3) == batches[0]["labels"].view(3, 3)[:, :1]).all()


def test_pair_groups_takes_same_group_pairs_first():
    rng = np.random.default_rng(0)
    items = [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("d", "5"), ("b", "6"), ("e", "7")]
    chosen = pair_groups(items, 6, rng)
    assert len(chosen) == len(set(chosen)) == 6
    pairs = [(items[chosen[i]][0], items[chosen[i + 1]][0]) for i in (0, 2)]
    assert sorted(pairs) == [("a", "a"), ("b", "b")]        # both pairs the pool offers
    no_pair = [("a", "1"), ("b", "2"), ("a", "1")]           # one style twice is no pair
    assert sorted(pair_groups(no_pair, 3, rng)) == [0, 1, 2]


def test_group_positives_come_from_the_shard_metadata(tmp_path):
    make_split(tmp_path, "train", n_styles=12, per_style=2, size=32, styles_per_shard=4,
               styles_per_group=3)                                     # groups g0..g3
    urls = train_shards(tmp_path)
    truth = {}
    for sample in raw_samples(urls):
        meta = json.loads(sample["json"])
        truth[label_id(meta["style_id"])] = label_id(meta["group"])
    cfg = tiny_cfg("train.num_workers=0", "train.positives=group", "train.shuffle_buffer=8",
                   "train.styles_per_batch=4").train
    stream = iter(StyleBatches(urls, cfg, seed=0, rank=0, world_size=1))
    batches = [next(stream) for _ in range(6)]
    for batch in batches:
        assert all(truth[int(s)] == int(g) for s, g in zip(batch["labels"], batch["groups"]))
        # each batch pairs two styles of one group: a group positive that is not the same style
        styles = batch["labels"].view(4, 3)[:, 0]
        groups = batch["groups"].view(4, 3)[:, 0]
        assert styles[0] != styles[1] and groups[0] == groups[1]
    resumed = next(iter(StyleBatches(urls, cfg, seed=0, rank=0, world_size=1, start_batch=5)))
    assert torch.equal(resumed["images"], batches[5]["images"])
    assert torch.equal(resumed["groups"], batches[5]["groups"])


def test_group_term_joins_the_loss(tmp_path):
    from train.main import loss_terms, weighted_loss
    from models.encoder import build_encoder
    make_split(tmp_path, "train", n_styles=8, per_style=2, size=32, styles_per_shard=4,
               styles_per_group=2)
    base = ["train.num_workers=0", "train.styles_per_batch=4", "train.ss_weight=0",
            "train.model.vit.enabled=false", "train.model.style_net.enabled=false"]
    env = type("Env", (), {"device": torch.device("cpu")})()
    for positives, names in [("style", {"infonce"}), ("group", {"group_infonce"}),
                             ("both", {"infonce", "group_infonce"})]:
        cfg = tiny_cfg(*base, f"train.positives={positives}")
        batch = next(iter(StyleBatches(train_shards(tmp_path), cfg.train, 0, 0, 1)))
        terms = loss_terms(build_encoder(cfg), batch, cfg.train, env)
        assert set(terms) == names
        expected = sum(value.item() for value in terms.values()) / len(terms)
        assert weighted_loss(terms, cfg.train).item() == pytest.approx(expected)


def test_raw_groups_join_an_nst_batch_and_the_loss(tmp_path):
    from train.main import loss_terms, weighted_loss
    from train.loss import multi_positive_infonce
    from models.encoder import build_encoder
    make_split(tmp_path, "train", n_styles=12, per_style=2, size=32, styles_per_shard=4,
               styles_per_group=3)                                     # groups g0..g3
    urls = train_shards(tmp_path)
    style_images = {}                                                  # group -> raw JPEG bytes
    for sample in raw_samples(urls):
        style_images.setdefault(json.loads(sample["json"])["group"], []).append(sample["style.jpg"])
    cfg = tiny_cfg("train.num_workers=0", "train.raw_groups_per_batch=2", "train.ss_weight=0.5",
                   "train.model.vit.enabled=false", "train.model.style_net.enabled=false")
    stream = iter(StyleBatches(urls, cfg.train, seed=0, rank=0, world_size=1))
    batches = [next(stream) for _ in range(4)]
    for batch in batches:
        assert batch["images"].shape == batch["views"].shape == (9, 3, 32, 32)   # NST part as before
        assert batch["raw_images"].shape == (4, 3, 32, 32)                      # 2 groups x K = 2
        groups = batch["raw_groups"].view(2, 2)
        assert (groups[:, 0] == groups[:, 1]).all() and groups[0, 0] != groups[1, 0]
        assert set(groups[:, 0].tolist()) <= {label_id(g) for g in style_images}
    resumed = next(iter(StyleBatches(urls, cfg.train, seed=0, rank=0, world_size=1, start_batch=3)))
    assert torch.equal(resumed["raw_images"], batches[3]["raw_images"])
    without = next(iter(StyleBatches(urls, tiny_cfg("train.num_workers=0").train, 0, 0, 1)))
    assert "raw_images" not in without and torch.equal(without["labels"], batches[0]["labels"])
    env = type("Env", (), {"device": torch.device("cpu")})()
    model = build_encoder(cfg).eval()
    terms = loss_terms(model, batches[0], cfg.train, env)
    assert set(terms) == {"infonce", "raw_group", "two_view"}
    alone = multi_positive_infonce(model(batches[0]["raw_images"]), batches[0]["raw_groups"],
                                   cfg.train.temperature)    # the raw part's codes, by group
    assert terms["raw_group"].item() == pytest.approx(alone.item(), rel=1e-4)
    expected = (terms["infonce"] + terms["raw_group"]).item() / 2 + 0.5 * terms["two_view"].item()
    assert weighted_loss(terms, cfg.train).item() == pytest.approx(expected)


@pytest.mark.parametrize("mode, key", [("no_nst", "train.mode=no_nst"),
                                       ("nst", "train.raw_groups_per_batch")])
def test_raw_groups_without_a_group_column_name_the_sample_and_the_key(tmp_path, mode, key):
    make_split(tmp_path, "train", n_styles=4, per_style=2, size=32, styles_per_shard=4,
               styles_per_group=0)                                     # no sample has a group
    cfg = tiny_cfg(f"train.mode={mode}", "train.raw_groups_per_batch=2", "train.num_workers=0")
    with pytest.raises(ShardError, match=rf"sample sst0-0 in .*shard-000000.tar has no group: {key} needs "
                                         "the style manifest's group column"):
        StyleBatches(train_shards(tmp_path), cfg.train, 0, 0, 1)


def test_fewer_shards_than_workers_still_feeds_every_worker(tmp_path):
    make_split(tmp_path, "train", n_styles=3, per_style=2, size=32, styles_per_shard=3)  # one shard
    cfg = tiny_cfg("train.num_workers=2").train
    stream = batch_iterator(tmp_path, cfg, 0, rank=0, world_size=1)
    labels = [next(stream)["labels"] for _ in range(4)]  # batches from both workers, several epochs
    assert all(len(l) == 9 for l in labels)


def test_missing_or_incomplete_shards_say_what_to_do(tmp_path):
    with pytest.raises(ShardError, match="not found"):
        train_shards(tmp_path / "absent")
    with pytest.raises(ShardError, match="no 'train' split"):
        train_shards(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "shard-000000.tar").write_bytes(b"")
    with pytest.raises(ShardError, match="no complete shards"):
        train_shards(tmp_path)


def cut_in_half(path: Path) -> Path:
    """Truncate ``path`` inside its second half, off any 512-byte tar block boundary."""
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2 // 512 * 512 + 100)
    return path


@pytest.fixture
def three_shards(uneven_shards, tmp_path) -> Path:
    """A private copy of the uneven shards (4 + 4 + 2 styles), free to damage."""
    return Path(shutil.copytree(uneven_shards, tmp_path / "shards"))


def test_a_cut_train_shard_is_named_before_training(three_shards, tmp_path, capsys):
    cut = cut_in_half(three_shards / "train" / "shard-000001.tar")
    with pytest.raises(ShardError, match=r"1 of 3 train shards cannot be read: .*shard-000001\.tar: "
                                         r"cannot be read as a tar, the file is truncated or corrupt"):
        train_shards(three_shards)
    warnings = []
    assert train_shards(three_shards, "skip", warnings.append) == [
        str(three_shards / "train" / f"shard-00000{n}.tar") for n in (0, 2)]
    assert warnings == [f"skipping 1 of 3 train shards that cannot be read: {cut}: cannot be read "
                        "as a tar, the file is truncated or corrupt (unexpected end of data)"]
    assert main([*CONFIG, "--shards", str(three_shards), "--out", str(tmp_path / "run"), *TINY,
                 "train.steps=1"]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and "train.bad_shards=skip" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()   # refused before the run folder is made


def test_a_shard_that_breaks_during_training_is_named(three_shards):
    """Past the up-front check (a shard cut while training runs), reading it names the file,
    also from a DataLoader worker."""
    cut = three_shards / "train" / "shard-000000.tar"
    with tarfile.open(cut) as archive:
        member = archive.getmembers()[5]
    with open(cut, "r+b") as fh:  # inside a member's data: a stream read cannot miss the cut
        fh.truncate(member.offset_data + member.size // 2)
    message = f"{cut}: cannot be read as a tar, the file is truncated or corrupt"
    with pytest.raises(ShardError, match=message):
        list(raw_samples([str(cut)]))
    with pytest.raises(ShardError) as caught:
        next(batch_stream([str(cut)], tiny_cfg("train.num_workers=1").train, 0, rank=0, world_size=1))
    assert error_text(caught.value).startswith(message)


def test_shards_without_stats_file_are_counted_in_a_warning(three_shards):
    (three_shards / "train" / "shard-000002.stats.json").unlink()
    warnings = []
    assert len(train_shards(three_shards, warn=warnings.append)) == 2
    assert warnings == [f"{three_shards / 'train'}: 2 of 3 shards complete; 1 incomplete (no stats file or index) "
                        "skipped: shard-000002.tar (stage 1 did not finish them: run it again to "
                        "complete the split)"]


def test_a_shard_whose_index_was_deleted_is_not_trained_on(three_shards):
    (three_shards / "train" / "shard-000001.parquet").unlink()
    warnings = []
    assert train_shards(three_shards, warn=warnings.append) == [
        str(three_shards / "train" / f"shard-00000{n}.tar") for n in (0, 2)]
    assert len(warnings) == 1 and "2 of 3 shards complete" in warnings[0]
    assert "shard-000001.tar" in warnings[0]


@pytest.mark.parametrize("damage", ["empty", "cut"])
def test_a_damaged_checkpoint_is_named_on_resume(uneven_shards, tmp_path, capsys, damage):
    run = tmp_path / "run"
    checkpoint = last_checkpoint_path(run)
    checkpoint.parent.mkdir(parents=True)
    torch.save({"model": {"weight": torch.rand(4096)}, "config": {}}, checkpoint)
    if damage == "empty":
        checkpoint.write_bytes(b"")
    else:
        cut_in_half(checkpoint)
    code = main([*CONFIG, "--shards", str(uneven_shards), "--out", str(run), "--resume", *TINY,
                 "train.steps=1", "train.num_workers=0"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    what = "empty" if damage == "empty" else "truncated or corrupt"
    assert f"error: {checkpoint} cannot be read as a checkpoint: the file is {what}" in err


def test_tensorboard_scalars_next_to_metrics(uneven_shards, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_cfg("train.num_workers=0", "train.steps=2", "train.ss_weight=0.5")
    run_training(cfg, uneven_shards, tmp_path / "run")
    board = EventAccumulator(str(tmp_path / "run"))
    board.Reload()
    tags = {"loss/total", "loss/infonce", "loss/two_view", "lr", "samples_per_s"}
    assert tags <= set(board.Tags()["scalars"])
    assert all([e.step for e in board.Scalars(tag)] == [1, 2] for tag in tags)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in board.Scalars("loss/total")] == pytest.approx([r["loss"] for r in logged], abs=1e-5)
    with MetricsLog(tmp_path / "off", 1, enabled=True, tensorboard=False) as metrics:
        metrics.path.parent.mkdir()
        metrics.log(1, {"total": 1.0}, 0.1, 1.0, 1.0)
    assert [p.name for p in (tmp_path / "off").iterdir()] == ["metrics.jsonl"]


def test_cli_reports_config_typos_and_missing_shards(tmp_path, capsys):
    assert main([*CONFIG, "--shards", str(tmp_path), "--out", str(tmp_path / "run"), "train.stpes=3"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err
    assert main([*CONFIG, "--shards", str(tmp_path / "none"), "--out", str(tmp_path / "run")] + TINY) == 2
    assert "shards directory not found" in capsys.readouterr().err


def test_a_read_only_run_folder_is_one_line_and_exit_2(uneven_shards, read_only_folder, capsys):
    code = main([*CONFIG, "--shards", str(uneven_shards), "--out", str(read_only_folder), *TINY,
                 "train.steps=1"])
    err = capsys.readouterr().err
    reason = "read-only file system" if os.geteuid() == 0 else "permission denied"
    assert code == 2 and err == f"error: cannot write to {read_only_folder}: {reason}\n"
    assert list(read_only_folder.iterdir()) == []


def test_a_second_training_in_one_run_folder_is_refused(uneven_shards, tmp_path, capsys):
    run = tmp_path / "run"
    with FolderLock(run, "training"):   # a live training holds the folder
        code = main([*CONFIG, "--shards", str(uneven_shards), "--out", str(run), *TINY, "train.steps=1"])
    assert code == 2
    assert f"{run} is in use by another training (pid {os.getpid()}" in capsys.readouterr().err
    assert not (run / "metrics.jsonl").exists()


@pytest.mark.slow
def test_torchrun_ranks_die_with_their_launcher(uneven_shards, tmp_path):
    """Killing torchrun's launcher alone must not leave its ranks training."""
    run = tmp_path / "run"
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "train/main.py", *CONFIG, "--shards",
               str(uneven_shards), "--out", str(run), *TINY, "train.num_workers=0", "train.steps=100000"]
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.5)
    ranks = [pid for pid in _processes_running(str(run)) if pid != launcher.pid]
    assert len(ranks) >= 2
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in ranks) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(_alive(pid) for pid in ranks)
    # And the folder is free for a --resume, once the kernel has torn the ranks down: a rank's
    # main thread shows as a zombie while its other threads (the TensorBoard writer's) still
    # exit, and only then are its files, the lock's among them, closed.
    assert _lock_frees(run, seconds=30)


def _lock_frees(run: Path, seconds: float) -> bool:
    deadline = time.time() + seconds
    while True:
        try:
            with FolderLock(run, "training"):
                return True
        except LockedError:
            if time.time() > deadline:
                return False
            time.sleep(0.5)


def _processes_running(text: str) -> list[int]:
    """Pids whose command line mentions ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:   # a zombie has exited already
        return fh.read().split()[2] != "Z"
