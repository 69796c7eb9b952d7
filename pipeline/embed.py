"""Embed a collection of images with a style model: Ray Data batch inference to parquet shards.

    python pipeline/embed.py --input photos/ --checkpoint runs/nst/checkpoints/last.pt --out /abs/emb
    python pipeline/embed.py --input 'art/**/*.png' --baseline vgg_moments --out /abs/emb-vgg
    python pipeline/embed.py --input styles.parquet --checkpoint RUN/last.pt \\
        --baseline vit_raw --out /abs/emb-fused embed.fuse_weights=[1,0.5]      # a fused pair

Reads: --input, a folder (searched recursively for embed.extensions), a glob (quote it), or a
parquet manifest (a content or style manifest, or a plain one with columns id, path); the
model: one --checkpoint [NAME=]PATH or --baseline NAME (built from --config), or two of them
fused with embed.fuse_weights.
Writes to --out: embeddings-NNNNN.parquet (columns id, path, embedding: float32 list, status,
reason; the model's name, hash and dimension in the file metadata), config.yaml (the resolved
config) and _embed.json (model, inputs, last run's figures). Images are sorted by id and cut
into files of embed.rows_per_file; a rerun of the same command redoes only missing files, and
refuses an --out that holds another model's or another collection's files. An image that
cannot be read is recorded (status failed, with its reason), not fatal.
--input, --checkpoint and --out may be URLs (s3://bucket/art/, see common.storage); the
actors read images and the files are written through fsspec, each file uploaded whole.
Ray: a local Ray (bounded object store) unless embed.ray.address or RAY_ADDRESS names a
cluster; under `ray job submit` pass absolute paths (the job runs in a copy of the repo).
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not this folder, wins imports
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # (pipeline/stylize.py shadows stylize)

import argparse  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Sequence  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from common import storage  # noqa: E402
from common.config import add_config_args, load_config, save_config  # noqa: E402
from common.images import open_image  # noqa: E402
from common.ray_cluster import cluster_gpus, init_ray  # noqa: E402
from common.schema import Config, EmbedRay  # noqa: E402
from models.baselines import list_baselines  # noqa: E402
from stylecode import Recipe, StyleCodeError, build  # noqa: E402
from stylecode.collection import Item, digest, file_count, file_rows, find_images  # noqa: E402
from stylecode.store import (STATE_NAME, ModelInfo, file_path, read_info, read_state,  # noqa: E402
                             write_file)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--checkpoint / --baseline, kept in command-line order (a fused pair's order matters)."""
    parser.add_argument("--checkpoint", dest="models", action="append", default=[],
                        metavar="[NAME=]PATH", help="a training checkpoint (named after its run "
                        "folder unless NAME= is given)")
    parser.add_argument("--baseline", dest="models", action="append",
                        type=lambda name: f"baseline:{name}", metavar="NAME",
                        help=f"a registered baseline ({', '.join(list_baselines())})")


def model_recipe(models: Sequence[str], cfg: Config) -> Recipe:
    """The model(s) named on the command line; two make a fused pair (embed.fuse_weights)."""
    if len(models) not in (1, 2):
        raise StyleCodeError("name one model (--checkpoint or --baseline), or two to fuse")
    return Recipe.parse(models, cfg.embed.fuse_weights if len(models) == 2 else None)


@dataclass
class Job:
    """One embed run: the collection, the model and where the files go."""

    cfg: Config
    recipe: Recipe
    images: list[Item]
    out: str
    model_hash: str
    source: str

    @property
    def rows_per_file(self) -> int:
        return self.cfg.embed.rows_per_file

    @property
    def files(self) -> int:
        return file_count(len(self.images), self.rows_per_file)

    def identity(self) -> dict:
        return {"model": {"name": self.recipe.name, "hash": self.model_hash, **self.recipe.to_dict()},
                "inputs": {"source": self.source, "images": len(self.images),
                           "digest": digest(self.images)},
                "rows_per_file": self.rows_per_file, "files": self.files}


def _output_key(state: dict) -> tuple:
    """What fixes the files' content: the model, the collection (not how it was named on the
    command line) and its cut into files."""
    return state["model"]["hash"], state["inputs"]["digest"], state["rows_per_file"]


def claim_output(job: Job) -> None:
    """Refuse to mix files of another model or collection (or another cut) in one --out."""
    wanted, previous = job.identity(), read_state(job.out)
    if previous and _output_key(previous) != _output_key(wanted):
        raise StyleCodeError(
            f"{job.out} holds embeddings of another model, collection or embed.rows_per_file "
            f"({STATE_NAME}: model {previous['model']['name']} {previous['model']['hash']}, "
            f"{previous['inputs']['images']} images from {previous['inputs']['source']}): "
            "use a new --out")
    storage.write_json(storage.join(job.out, STATE_NAME), wanted)
    save_config(job.cfg, job.out)


def is_complete(job: Job, number: int) -> bool:
    """A file is done when it exists, reads, and holds this model's codes of its images."""
    path = file_path(job.out, number)
    if not storage.exists(path):
        return False
    try:
        info, rows = read_info(path)
    except StyleCodeError as exc:
        print(f"[embed] redoing a damaged file: {exc}", flush=True)
        return False
    return info.hash == job.model_hash and rows == len(file_rows(job.images, number, job.rows_per_file))


def actor_gpus(rcfg: EmbedRay) -> float:
    """GPUs per actor: as configured (checked against the cluster: a GPU actor on a cluster
    without GPUs waits forever), or the cluster's GPUs shared out, at most one each."""
    have = cluster_gpus()
    need = rcfg.num_gpus_per_actor
    if need is None:
        return min(1.0, have / rcfg.num_actors)
    if need * rcfg.num_actors > have:
        raise StyleCodeError(f"embed.ray.num_gpus_per_actor={need} x {rcfg.num_actors} actors "
                             f"but the Ray cluster has {have:g} GPUs: actors would wait forever. "
                             "Set embed.ray.num_gpus_per_actor=null (use what there is) or 0.")
    return float(need)


def _open(path: str) -> tuple[Image.Image | None, str]:
    try:
        return open_image(path), ""
    except Exception as exc:  # any image that cannot be opened fails alone, with its reason
        return None, str(exc) if str(path) in str(exc) else f"{path}: {exc!r}"


class EmbedActor:
    """A Ray Data actor: the model is built once per actor; each call opens and embeds one
    batch of (pos, path) rows and returns (pos, embedding, reason) rows."""

    def __init__(self, recipe: dict, cfg: Config, device: str, threads: int, decode_threads: int):
        if device == "cpu":  # the actor's share of the machine, not every core
            torch.set_num_threads(threads)
        storage.configure_from(cfg)   # an actor is a process of its own: images may be URLs
        self.model = build(Recipe.from_dict(recipe), cfg, device)
        self.decode = ThreadPoolExecutor(decode_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        opened = list(self.decode.map(_open, batch["path"]))
        good = [i for i, (image, _) in enumerate(opened) if image is not None]
        codes = np.zeros((len(opened), self.model.dim), np.float32)
        if good:
            codes[good] = self.model.embed([opened[i][0] for i in good], batch_size=len(good))
        return {"pos": batch["pos"], "embedding": codes,
                "reason": np.array([reason for _, reason in opened], dtype=object)}


@dataclass
class Assembler:
    """Gathers the actors' rows into output files and writes each file once it is whole."""

    job: Job
    info: ModelInfo
    parts: dict[int, dict] = field(default_factory=dict)
    images: int = 0
    failed: int = 0
    written: int = 0
    reasons: list[str] = field(default_factory=list)
    first_done: float = float("inf")      # when the first batch came back
    images_before: int = 0                # and its images

    def steady_rate(self) -> float:
        """Images/s after the first batch: the pipeline's pace (opening, embedding, Ray Data,
        writing) without the start-up of Ray, the actors and the models, nor the first call's
        allocations (which the bare benchmark's warm-up call leaves out too)."""
        elapsed, images = time.time() - self.first_done, self.images - self.images_before
        return images / elapsed if images > 0 and elapsed > 0 else 0.0

    def _part(self, number: int) -> dict:
        if number not in self.parts:
            rows = len(file_rows(self.job.images, number, self.job.rows_per_file))
            self.parts[number] = {"codes": np.zeros((rows, self.info.dim), np.float32),
                                  "reasons": [""] * rows, "missing": rows}
        return self.parts[number]

    def add(self, batch: dict[str, np.ndarray]) -> None:
        for pos, code, reason in zip(batch["pos"].tolist(), batch["embedding"], batch["reason"]):
            number, slot = divmod(pos, self.job.rows_per_file)
            part = self._part(number)
            part["codes"][slot], part["reasons"][slot] = code, reason
            part["missing"] -= 1
            self.images, self.failed = self.images + 1, self.failed + bool(reason)
            if reason and len(self.reasons) < 5:
                self.reasons.append(reason)
            if part["missing"] == 0:
                self._write(number)
        if self.first_done == float("inf"):
            self.first_done, self.images_before = time.time(), self.images

    def _write(self, number: int) -> None:
        part = self.parts.pop(number)
        rows = file_rows(self.job.images, number, self.job.rows_per_file)
        write_file(file_path(self.job.out, number), [r.id for r in rows], [r.path for r in rows],
                   part["codes"], part["reasons"], self.info)
        self.written += 1


def build_dataset(job: Job, rows: list[dict], gpus: float):
    """(pos, path) rows, one block per batch so every actor gets work, mapped by the actors."""
    import ray.data

    ecfg, rcfg = job.cfg.embed, job.cfg.embed.ray
    batches = file_count(len(rows), ecfg.batch_size)
    actors = min(rcfg.num_actors, batches)
    print(f"[embed] {len(rows)} images on {actors} actors ({gpus:g} GPU each, batch "
          f"{ecfg.batch_size})", flush=True)
    ray.data.DataContext.get_current().enable_progress_bars = False  # ours report images/s
    return ray.data.from_items(rows, override_num_blocks=batches).map_batches(
        EmbedActor, batch_size=ecfg.batch_size,
        fn_constructor_kwargs={"recipe": job.recipe.to_dict(), "cfg": job.cfg,
                               "device": "cuda" if gpus else "cpu",
                               "threads": max(1, int(rcfg.num_cpus_per_actor)),
                               "decode_threads": rcfg.decode_threads},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=rcfg.num_cpus_per_actor, num_gpus=gpus)


def run_ray(job: Job, todo: list[int], info: ModelInfo) -> Assembler:
    """Embed the images of the ``todo`` files on a Ray Data actor pool, writing each file as
    soon as its rows are in."""
    ecfg, rcfg = job.cfg.embed, job.cfg.embed.ray
    init_ray(rcfg.address, rcfg.num_actors * rcfg.num_cpus_per_actor, rcfg.object_store_mb)
    rows = [{"pos": number * job.rows_per_file + slot, "path": item.path} for number in todo
            for slot, item in enumerate(file_rows(job.images, number, job.rows_per_file))]
    dataset = build_dataset(job, rows, actor_gpus(rcfg))
    assembler = Assembler(job, info)
    started, reported = time.time(), time.time()
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        assembler.add(batch)
        if time.time() - reported >= ecfg.progress_every_s:
            report_progress(assembler, len(rows), len(todo), started)
            reported = time.time()
    report_progress(assembler, len(rows), len(todo), started)
    return assembler


def report_progress(assembler: Assembler, total: int, files: int, started: float) -> None:
    rate = assembler.steady_rate() or assembler.images / max(time.time() - started, 1e-9)
    eta = (total - assembler.images) / rate if rate else float("nan")
    print(f"[embed] {assembler.images}/{total} images | {assembler.written}/{files} files | "
          f"{rate:.1f} images/s | failures {assembler.failed} | eta {eta:.0f}s", flush=True)


def model_info(job: Job) -> ModelInfo:
    """Build the model once here, on the CPU, before anything is written: a model that cannot
    be built is one clear error, not one traceback per actor."""
    model = build(job.recipe, job.cfg, "cpu")
    return ModelInfo(model.name, job.model_hash, model.dim)


def run_embed(cfg: Config, source: str, models: Sequence[str], out: str | Path) -> dict:
    """Embed every image of ``source`` not yet in a complete file of ``out``; returns the
    run's figures (also saved in ``_embed.json`` as ``last_run``)."""
    started = time.time()
    recipe = model_recipe(models, cfg)
    storage.check_remote(read=[source if not set("*?[") & set(source) else None,
                               *(spec.path for spec in recipe.specs)], write=[out])
    images = find_images(source, cfg.embed.extensions)
    job = Job(cfg, recipe, images, storage.resolve(out), recipe.hash(cfg), source)
    info = model_info(job)
    claim_output(job)
    todo = [number for number in range(job.files) if not is_complete(job, number)]
    print(f"[embed] {len(images)} images from {source} with {recipe.name} ({job.model_hash}): "
          f"{job.files} files, {job.files - len(todo)} already complete, {len(todo)} to do", flush=True)
    run = {"images": 0, "failed": 0, "seconds": 0.0, "embedding_seconds": 0.0, "images_per_s": 0.0}
    if todo:
        embedding_started = time.time()
        assembler = run_ray(job, todo, info)
        seconds = time.time() - embedding_started
        run.update(images=assembler.images, failed=assembler.failed, embedding_seconds=seconds,
                   images_per_s=assembler.images / seconds,
                   steady_images_per_s=assembler.steady_rate(), failure_examples=assembler.reasons)
    run["seconds"] = time.time() - started
    storage.write_json(storage.join(job.out, STATE_NAME), {**job.identity(), "last_run": run})
    print(f"[embed] done in {run['seconds']:.1f}s: {run['images']} images embedded, "
          f"{run['failed']} failed (status/reason columns) -> {job.out}", flush=True)
    for reason in run.get("failure_examples", []):
        print(f"[embed]   failed: {reason}", flush=True)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--input", required=True, help="folder, glob or parquet manifest")
    add_model_args(parser)
    parser.add_argument("--out", required=True, help="folder for the embedding files")
    args = parser.parse_args(argv)
    try:
        run_embed(load_config(args.config, args.overrides), args.input, args.models, args.out)
    except (StyleCodeError, ValueError, FileNotFoundError) as exc:
        print(f"[embed] error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
