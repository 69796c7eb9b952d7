"""Stage 2: train the contrastive style encoder on the shards of stage 1.

    python train/main.py --shards DIR --out RUN [--config FILE] [--resume] [key=value ...]
    torchrun --nproc_per_node=N train/main.py --shards DIR --out RUN ...
    torchrun --standalone --nproc_per_node=2 train/main.py --shards demo/shards \\
        --out runs/no_nst train.mode=no_nst train.steps=100          # the no-NST control

Reads: the ``train`` split of ``--shards`` (only shards with a stats file, each checked against
it before the first step) and the config stage 1 recorded there (``--config`` may replace it
but not contradict it on seed, world, data or stylize keys). ``train.mode=nst`` trains on each
style's stylizations plus its style image; ``no_nst`` on the raw style images of each group.
Writes to ``--out``: ``config.yaml``, ``metrics.jsonl``, TensorBoard scalars,
``checkpoints/last.pt`` (every ``train.checkpoint_every`` steps and at the end) and
``checkpoints/step-0.pt`` (the encoder before its first step).

One process runs without a process group; under torchrun each rank joins one (gloo on CPU,
nccl on GPU) and the model is wrapped in DDP. Rank 0 prints a progress line, appends step,
loss, lr, samples/s and ETA to ``RUN/metrics.jsonl``, with ``train.tensorboard`` writes them and
the loss terms as TensorBoard scalars into ``RUN`` too, and writes ``RUN/checkpoints/last.pt``.
Each rank records its step count in ``RUN/ranks/rank-<r>.json`` when it finishes.

``--shards`` and ``--out`` may be URLs (``s3://bucket/shards``; see ``common.storage``): both
are checked before the model is built, tars are streamed, checkpoints are uploaded whole. An
object store cannot append to a file, so rank 0 then keeps ``metrics.jsonl`` and the
TensorBoard files in a local temporary folder and uploads them with every checkpoint and at
the end (``--resume`` fetches them first). A run folder on object storage is not locked: do
not start two trainings into one.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not this folder, wins imports
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import math
import os
import resource
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common import storage
from common.config import add_config_args, config_for_shards, public, save_config
from common.files import LockedError
from common.lease import folder_lock
from common.schema import Config, Train
from models.checkpoint import SPEC_KEY, load_checkpoint, save_checkpoint
from models.encoder import ModelConfigError, build_encoder
from shards.reader import ShardError
from train.checkpoint import RESUME_KEYS, last_checkpoint_path, start_checkpoint_path
from train.data import batch_stream, train_shards
from train.loss import multi_positive_infonce, two_view_loss

PR_SET_PDEATHSIG = 1
EXIT_NON_FINITE = 3


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; no checkpoint was written for that step."""


@dataclass
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def die_with_launcher() -> None:
    """Under torchrun, have the kernel end this rank when its launcher dies.

    torchrun starts ranks in sessions of their own, so killing the launcher alone would leave
    them training, and a ``--resume`` would then run two trainings in one folder.
    """
    if sys.platform != "linux" or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the launcher died before the request was made
        sys.exit("error: the torchrun launcher is gone")


def init_distributed() -> Distributed:
    """Join torchrun's process group when launched by it; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Distributed(rank=rank, world_size=world_size, device=device)


def cpu_threads(configured: int | None) -> int:
    """Torch threads per process: as configured, or the cores shared out among local ranks
    (torchrun sets OMP_NUM_THREADS=1; more ranks x threads than cores only thrashes)."""
    if configured:
        return int(configured)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (os.cpu_count() or 1) // local_ranks)


def lr_factor(warmup_steps: int, total_steps: int):
    """Linear warm-up to the base rate, then cosine decay to zero at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def build_optimizer(model: torch.nn.Module, train_cfg: Train) -> torch.optim.AdamW:
    # No weight decay on biases, norms and embeddings' 1-d parameters (the usual ViT recipe).
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": train_cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=train_cfg.lr)


def all_finite(loss: torch.Tensor, env: Distributed) -> bool:
    """True when the loss is finite on every rank (all ranks must stop together)."""
    flag = torch.tensor([float(torch.isfinite(loss.detach()).item())], device=env.device)
    if dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def means_over_ranks(values: dict[str, float], env: Distributed) -> dict[str, float]:
    """Each value averaged over the ranks (one all-reduce for all of them)."""
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=env.device)
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return dict(zip(values, (tensor / env.world_size).tolist()))


# Which labels each contrastive term groups by (train.positives): a style's stylizations and
# its style image (``labels``), or every style of one manifest group (``groups``).
POSITIVE_TERMS = {"style": {"infonce": "labels"}, "group": {"group_infonce": "groups"},
                  "both": {"infonce": "labels", "group_infonce": "groups"}}


# The image tensors a batch may carry, in the order one forward pass embeds them.
IMAGE_PARTS = ("images", "views", "raw_images")


def loss_terms(model: torch.nn.Module, batch: dict, train_cfg: Train, env: Distributed
               ) -> dict[str, torch.Tensor]:
    """The unweighted loss terms of a batch: the multi-positive contrastive terms of
    ``train.positives`` (``infonce`` over styles, ``group_infonce`` over groups), ``raw_group``
    over the raw style images of an nst batch's ``raw_groups_per_batch`` groups, and, when the
    batch has second views (the SS term is on), ``two_view``."""
    # One forward pass for every part: DDP expects one forward per backward.
    parts = [name for name in IMAGE_PARTS if name in batch]
    images = torch.cat([batch[name].to(env.device, non_blocking=True) for name in parts])
    with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=env.device.type == "cuda"):
        codes = model(images)
    codes = dict(zip(parts, codes.float().split([len(batch[name]) for name in parts])))
    temperature = train_cfg.temperature
    view_a = codes["images"]
    # The no-NST control's labels are its raw groups already: one term.
    positives = train_cfg.positives if train_cfg.mode == "nst" else "style"
    terms = {name: multi_positive_infonce(view_a, batch[key].to(env.device, non_blocking=True),
                                          temperature)
             for name, key in POSITIVE_TERMS[positives].items()}
    if "views" in codes:
        terms["two_view"] = two_view_loss(view_a, codes["views"], temperature)
    if "raw_images" in codes:
        terms["raw_group"] = multi_positive_infonce(
            codes["raw_images"], batch["raw_groups"].to(env.device, non_blocking=True), temperature)
    return terms


def weighted_loss(terms: dict[str, torch.Tensor], train_cfg: Train) -> torch.Tensor:
    """The loss minimised: the mean of the contrastive terms plus ``ss_weight`` times the
    two-view term when present."""
    contrastive = [value for name, value in terms.items() if name != "two_view"]
    loss = torch.stack(contrastive).mean()
    return loss + train_cfg.ss_weight * terms["two_view"] if "two_view" in terms else loss


def compute_loss(model: torch.nn.Module, batch: dict, train_cfg: Train, env: Distributed) -> torch.Tensor:
    """The loss of a batch (what the benchmarks time)."""
    return weighted_loss(loss_terms(model, batch, train_cfg, env), train_cfg)


def format_eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


# The files of MetricsLog, in the run folder: what a resumed run on object storage fetches.
LOG_PATTERNS = ("metrics.jsonl", "events.out.tfevents.*")


def board_writer(out: Path, start: int):
    """A TensorBoard writer into the run folder. On resume, the steps after ``start`` that the
    interrupted run had logged are purged from the view (they are run again)."""
    from torch.utils.tensorboard import SummaryWriter  # slow to import: only where it is used

    return SummaryWriter(log_dir=str(out), purge_step=start + 1 if start else None)


class MetricsLog:
    """Rank 0's progress line, ``metrics.jsonl`` (one JSON object per logged step) and, with
    ``tensorboard``, TensorBoard scalars: ``loss/<term>`` (``loss/total`` and the unweighted
    terms), ``lr`` and ``samples_per_s``. A context manager: leaving it closes the writer."""

    def __init__(self, out: Path, total_steps: int, enabled: bool, tensorboard: bool = False,
                 start: int = 0):
        self.path, self.total, self.enabled = out / "metrics.jsonl", total_steps, enabled
        self.board = board_writer(out, start) if enabled and tensorboard else None

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.board is not None:
            self.board.close()

    def log(self, step: int, losses: dict[str, float], lr: float, samples_per_s: float,
            step_seconds: float) -> None:
        """Record one logged step; ``losses`` holds ``total`` and the terms, rank means."""
        if not self.enabled:
            return
        loss, eta = losses["total"], (self.total - step) * step_seconds
        record = {"step": step, "loss": round(loss, 6), "lr": lr,
                  "samples_per_s": round(samples_per_s, 2), "eta_s": round(eta, 1)}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(f"step {step}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  "
              f"{samples_per_s:.1f} img/s  eta {format_eta(eta)}", flush=True)
        if self.board is not None:
            self._scalars(step, losses, lr, samples_per_s)

    def _scalars(self, step: int, losses: dict[str, float], lr: float, samples_per_s: float) -> None:
        for name, value in losses.items():
            self.board.add_scalar(f"loss/{name}", value, step)
        self.board.add_scalar("lr", lr, step)
        self.board.add_scalar("samples_per_s", samples_per_s, step)
        self.board.flush()  # on disk now: a run killed later keeps what it logged


def checkpoint_state(model, optimizer, scheduler, step: int, cfg: Config, env: Distributed) -> dict:
    train_cfg = cfg.train
    position = {"seed": cfg.seed, "batches": step, "world_size": env.world_size,
                "num_workers": train_cfg.num_workers, "mode": train_cfg.mode}
    return {"model": unwrap(model).state_dict(), SPEC_KEY: unwrap(model).spec(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "data_position": position, "config": public(cfg)}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def restore(path: str | Path, model, optimizer, scheduler, cfg: Config, env: Distributed) -> int:
    """Load ``last.pt`` into model, optimizer and scheduler; returns the step to continue from."""
    if not storage.is_file(path):
        raise FileNotFoundError(f"no checkpoint at {path}: nothing to resume (run without --resume "
                                "to start afresh)")
    state = load_checkpoint(path, map_location=env.device, keys=RESUME_KEYS)
    try:
        unwrap(model).load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ModelConfigError(f"{path} does not fit the model this config describes (another "
                               f"architecture? resume with the run's own config): "
                               f"{' '.join(str(exc).split())[:400]}") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    position = state["data_position"]
    now = {"world_size": env.world_size, "num_workers": cfg.train.num_workers}
    changed = {k: (position[k], v) for k, v in now.items() if position[k] != v}
    if changed and env.is_main:
        print(f"resume: {changed} differ from the saved run (saved, now): the data stream goes "
              "on, but not in the order an uninterrupted run would have used", flush=True)
    return int(state["step"])


def setup_model(cfg: Config, env: Distributed):
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_encoder(cfg).to(env.device)
    if dist.is_initialized():
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    optimizer = build_optimizer(model, cfg.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(cfg.train.warmup_steps, cfg.train.steps))
    return model, optimizer, scheduler


def write_rank_record(out: str, env: Distributed, record: dict) -> None:
    storage.write_text(storage.join(out, "ranks", f"rank-{env.rank}.json"),
                       json.dumps(dict(record, rank=env.rank)))


def train_steps(model, optimizer, scheduler, stream, cfg: Config, out: str, logs: storage.LocalMirror,
                start: int, env: Distributed) -> dict:
    """The loop proper: runs steps ``start+1..train.steps``; returns timing and loss figures.
    Rank 0's logs go to ``logs`` (the run folder, or its local mirror: pushed with each
    checkpoint)."""
    train_cfg = cfg.train
    total = train_cfg.steps
    checkpoint = last_checkpoint_path(out)
    figures = {"first_loss": None, "final_loss": None, "images": 0, "data_seconds": 0.0}
    interval_losses: dict[str, float] = {}   # loss name -> sum over the interval's steps
    interval_steps, interval_start = 0, time.perf_counter()
    loop_start, timed_images = None, 0
    model.train()
    with MetricsLog(logs.folder, total, env.is_main, train_cfg.tensorboard, start) as metrics:
        for step in range(start + 1, total + 1):
            fetch_start = time.perf_counter()
            batch = next(stream)
            figures["data_seconds"] += time.perf_counter() - fetch_start if loop_start else 0.0
            terms = loss_terms(model, batch, train_cfg, env)
            loss = weighted_loss(terms, train_cfg)
            if not all_finite(loss, env):
                raise NonFiniteLossError(
                    f"non-finite loss ({loss.item()}) at step {step}: stopping without writing a "
                    f"checkpoint; {checkpoint} keeps the last good state. Lower train.lr or raise "
                    "train.temperature / train.warmup_steps")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            images = sum(len(batch[name]) for name in IMAGE_PARTS if name in batch) * env.world_size
            figures["images"] += images
            if loop_start is None:  # time from the end of step 1: worker start-up is not throughput
                loop_start = time.perf_counter()
            else:
                timed_images += images
            for name, value in {"total": loss, **terms}.items():
                interval_losses[name] = interval_losses.get(name, 0.0) + value.item()
            interval_steps += 1
            if step == start + 1 or step % train_cfg.log_every == 0 or step == total:
                elapsed = time.perf_counter() - interval_start
                losses = means_over_ranks({name: value / interval_steps
                                           for name, value in interval_losses.items()}, env)
                if figures["first_loss"] is None:
                    figures["first_loss"] = losses["total"]
                figures["final_loss"] = losses["total"]
                metrics.log(step, losses, scheduler.get_last_lr()[0],
                            images * interval_steps / elapsed, elapsed / interval_steps)
                interval_losses, interval_steps, interval_start = {}, 0, time.perf_counter()
            if env.is_main and (step % train_cfg.checkpoint_every == 0 or step == total):
                save_checkpoint(checkpoint, checkpoint_state(model, optimizer, scheduler, step, cfg, env))
                logs.push()
    seconds = time.perf_counter() - loop_start if loop_start else 0.0
    figures["samples_per_s"] = timed_images / seconds if seconds > 0 else 0.0
    figures["data_fraction"] = figures["data_seconds"] / seconds if seconds > 0 else 0.0
    return figures


def run_training(cfg: Config, shards: str | Path, out: str | Path, resume: bool = False) -> dict:
    """Train (or, with ``resume``, continue) a run; returns a summary of it.

    Summary keys: steps, start_step, first_loss, final_loss, samples_per_s, data_fraction
    (share of the timed loop spent waiting for batches), peak_rss_mb (this process), checkpoint,
    run_dir.
    """
    main_rank, bad_shards = int(os.environ.get("RANK", "0")) == 0, cfg.train.bad_shards
    out = storage.resolve(out)
    storage.check_remote(read=[shards], write=[out] if main_rank else [])
    # Fail fast on missing or cut shards, before building the model; every rank checks (the
    # process group does not exist yet) and finds the same list, rank 0 alone reports.
    urls = (train_shards(shards, bad_shards, warn_on_stderr) if main_rank
            else train_shards(shards, bad_shards))
    # Rank 0 writes the run folder: one training at a time in it (a second is refused; on
    # object storage by a lease, common.lease).
    with folder_lock(out, "training") if main_rank else nullcontext(), storage.LocalMirror(out) as logs:
        try:
            return _train(cfg, urls, out, logs, resume)
        finally:   # a stopped run's logs too (a NaN stop keeps what it logged)
            if main_rank:
                logs.push()


def warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _train(cfg: Config, urls: list[str], out: str, logs: storage.LocalMirror, resume: bool) -> dict:
    env = init_distributed()
    if env.device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg.train.threads))
    if env.is_main:
        save_config(cfg, out)
    model, optimizer, scheduler = setup_model(cfg, env)
    start = restore(last_checkpoint_path(out), model, optimizer, scheduler, cfg, env) if resume else 0
    if start and env.is_main:
        for pattern in LOG_PATTERNS:
            logs.pull(pattern)
    if start == 0 and env.is_main:
        save_checkpoint(start_checkpoint_path(out),
                        checkpoint_state(model, optimizer, scheduler, 0, cfg, env))
    stream = batch_stream(urls, cfg.train, cfg.seed, env.rank, env.world_size,
                          start_batch=start, pin_memory=env.device.type == "cuda")
    figures = train_steps(model, optimizer, scheduler, stream, cfg, out, logs, start, env)
    steps = max(start, cfg.train.steps)
    write_rank_record(out, env, {"steps": steps, "steps_run": steps - start,
                                 "images": figures["images"] // env.world_size})
    if dist.is_initialized():
        dist.barrier()
    return {"steps": steps, "start_step": start, "first_loss": figures["first_loss"],
            "final_loss": figures["final_loss"], "samples_per_s": figures["samples_per_s"],
            "data_fraction": figures["data_fraction"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "checkpoint": str(last_checkpoint_path(out)), "run_dir": str(out)}


def error_text(exc: Exception) -> str:
    """An error's message for the user. One raised in a DataLoader worker (a shard that breaks
    during training) is re-raised with the worker's traceback as its message: only the last
    line, the original message, is kept."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]   # "shards.reader.ShardError: <message>"
    return last.partition(": ")[2] or last


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", required=True, help="stage 1 output folder (or URL)")
    parser.add_argument("--out", required=True, help="run folder (or URL)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.pt")
    add_config_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    die_with_launcher()
    try:
        cfg = config_for_shards(args.config, args.overrides, args.shards)
        summary = run_training(cfg, args.shards, args.out, resume=args.resume)
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_NON_FINITE
    except (ShardError, ModelConfigError, LockedError, FileNotFoundError, ValueError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr, flush=True)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
