"""Pipeline benchmark: prints figures measured in one run on this machine.

    python benchmarks/bench_pipeline.py --config configs/tiny.yaml --out demo/bench [key=value ...]

1. Stage 1 with 1 and with 2 Ray actors (scaling ratio), against the bare NST methods run
   batched in one process on the same preloaded images (the pipeline's overhead ratio).
2. Training samples/s from pre-stylized shards against the same model and batch with the NST
   done on the fly inside the training loop (the published approach): speed-up ratio.
3. Evaluation time of the tiny report (one checkpoint, the baselines).
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root wins imports

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import storage  # noqa: E402
from common.config import DEFAULT_CONFIG, REPO_ROOT, add_config_args, load_config, public  # noqa: E402
from common.images import open_image  # noqa: E402
from common.schema import Config  # noqa: E402
from models.checkpoint import save_checkpoint  # noqa: E402
from models.encoder import build_encoder  # noqa: E402
from pipeline.runner import build_plan, run_stage1  # noqa: E402
from pipeline.worker import ShardWorker, method_batches, square  # noqa: E402
from shards.codec import pil_to_tensor  # noqa: E402
from shards.schema import CROP_METHOD, CROPS_SPLIT, TRAIN_SPLIT  # noqa: E402
from train.data import batch_iterator, label_id  # noqa: E402
from train.main import compute_loss, init_distributed, setup_model  # noqa: E402


def bench_stage1(cfg: Config, target: str | Path, actors: int) -> dict:
    """Stage 1 into ``target`` (a fresh folder or URL) with ``actors`` actors."""
    cfg = cfg.model_copy(deep=True)
    cfg.stylize.ray.num_actors = actors
    if not storage.is_url(target):
        shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    summary = run_stage1(cfg, target)
    seconds = time.perf_counter() - start
    # Crops are cut, not stylized: count the stylized images only, as the bare run does.
    images = sum(s["images"] for split, s in summary.items() if split != CROPS_SPLIT)
    # Time inside the actors (read, stylize, encode, write), without Ray's start-up.
    shard_seconds = sum(json.loads(storage.read_text(p))["seconds"]
                        for p in storage.glob(storage.join(target, "*", "*.stats.json"))
                        if storage.name(storage.parent(p)) != CROPS_SPLIT)
    import ray
    ray.shutdown()
    return {"actors": actors, "seconds": seconds, "images": images, "images_per_s": images / seconds,
            "per_actor_images_per_s": images / shard_seconds}


def bench_bare_methods(cfg: Config) -> dict:
    """The same stylizations as stage 1, batched in this process: no Ray, no files, no JPEG."""
    worker, jobs = prepare_bare_methods(cfg)
    start = time.perf_counter()
    images = run_bare_methods(worker, jobs)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": images, "images_per_s": images / seconds}


def prepare_bare_methods(cfg: Config) -> tuple[ShardWorker, list[tuple]]:
    """Stage 1's batches of stylizations with their images loaded, and the models built."""
    torch.set_num_threads(1)  # one actor has one CPU
    plan, _ = build_plan(cfg)
    worker = ShardWorker(cfg, device="cpu")
    size, batch_size = cfg.stylize.image_size, cfg.stylize.ray.batch_size
    jobs = []
    for shard in plan.shards:
        for group in shard.groups:
            items = tuple(i for i in group.items if i.method != CROP_METHOD)
            if not items:
                continue
            style = pil_to_tensor(square(open_image(group.style_path), size))
            # The same batches the worker makes: one method per batch.
            for batch in method_batches(items, batch_size):
                contents = torch.stack([pil_to_tensor(square(open_image(i.content_path), size))
                                        for i in batch])
                jobs.append((batch[0].method, batch[0].params["strength"], contents, group.style_id, style))
    for method in {job[0] for job in jobs}:
        worker.method(method)  # build every model before timing
    return worker, jobs


def run_bare_methods(worker: ShardWorker, jobs: list[tuple]) -> int:
    """Run the prepared batches once; returns the number of images stylized."""
    prepared = {}  # as the worker does: each style prepared once per method
    with torch.no_grad():
        for method, strength, contents, style_id, style in jobs:
            network = worker.method(method)
            if (style_id, method) not in prepared:
                prepared[style_id, method] = network.prepare_style(style)
            network.stylize(contents, prepared[style_id, method], strength=strength, seed=0)
    return sum(len(job[2]) for job in jobs)


def train_rate(cfg: Config, batches, steps: int) -> float:
    """Images/s of ``steps`` optimisation steps on batches from ``batches`` (one process)."""
    env = init_distributed()
    model, optimizer, _ = setup_model(cfg, env)
    count, start = 0, None
    for step in range(steps + 1):
        if step == 1:  # the first step pays start-up (workers, allocations): not throughput
            start, count = time.perf_counter(), 0
        batch = next(batches)
        loss = compute_loss(model, batch, cfg.train, env)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(batch["labels"])
    return count / (time.perf_counter() - start)


def on_the_fly_batches(cfg: Config, worker: ShardWorker):
    """Batches of the same shape as the shard loader's, with the NST done per step."""
    tcfg, scfg = cfg.train, cfg.stylize
    plan, _ = build_plan(cfg)
    groups = [g for shard in plan.shards if shard.split == TRAIN_SPLIT for g in shard.groups]
    contents = sorted({(i.content_id, i.content_path) for g in groups for i in g.items})
    rng = np.random.default_rng(0)
    strengths = scfg.strengths
    size, stylize_size = tcfg.image_size, scfg.image_size
    while True:
        images, labels = [], []
        for g in rng.choice(len(groups), tcfg.styles_per_batch, replace=False):
            group = groups[int(g)]
            style = pil_to_tensor(square(open_image(group.style_path), stylize_size))
            picks = rng.choice(len(contents), tcfg.images_per_style, replace=False)
            batch = torch.stack([pil_to_tensor(square(open_image(contents[int(i)][1]), stylize_size))
                                 for i in picks])
            method = scfg.train_methods[int(rng.integers(len(scfg.train_methods)))]
            strength = strengths[int(rng.integers(len(strengths)))]
            with torch.no_grad():
                out = worker.method(method)(batch, style, strength=strength, seed=0)
            group_images = torch.cat([style[None], out.float().cpu()])
            images.append(torch.nn.functional.interpolate(group_images, size=(size, size),
                                                          mode="bilinear", antialias=True))
            labels += [label_id(group.style_id)] * len(group_images)
        yield {"images": torch.cat(images), "labels": torch.tensor(labels)}


def bench_training(cfg: Config, shards: Path, steps: int) -> dict:
    torch.set_num_threads(2)
    loader = batch_iterator(shards, cfg.train, cfg.seed, 0, 1)
    prebuilt = [next(loader) for _ in range(steps + 1)]
    return {"shards": train_rate(cfg, batch_iterator(shards, cfg.train, cfg.seed, 0, 1), steps),
            "tensors": train_rate(cfg, iter(prebuilt), steps),
            "on_the_fly": train_rate(cfg, on_the_fly_batches(cfg, ShardWorker(cfg, "cpu")), steps)}


def evaluate_run(cfg: Config, config: str, shards: Path, out: Path, overrides: list[str]) -> float:
    """Seconds of the evaluation command as a user runs it: one encoder checkpoint (untrained:
    its cost is a trained one's) next to the baselines, named ``nst`` as the config's fused
    pairs expect."""
    checkpoint = save_checkpoint(out / "encoder" / "checkpoints" / "last.pt",
                                 {"model": build_encoder(cfg).state_dict(), "config": public(cfg), "step": 0})
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO_ROOT / "pipeline" / "eval.py"), "--config", str(config),
                    "--shards", str(shards), "--checkpoint", f"nst={checkpoint}",
                    "--out", str(out / "eval"), *overrides], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo" / "bench")
    parser.add_argument("--train-steps", type=int, default=10, help="timed steps per training loop")
    args = parser.parse_args(argv)
    args.config = args.config or str(DEFAULT_CONFIG)
    cfg = load_config(args.config, args.overrides)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = {"bare_methods": bench_bare_methods(cfg)}
    for actors in (1, 2):
        results[f"stage1_{actors}"] = bench_stage1(cfg, out / f"stage1-{actors}-actors", actors)
    results["training"] = bench_training(cfg, out / "stage1-2-actors", args.train_steps)
    results["eval_seconds"] = evaluate_run(cfg, args.config, out / "stage1-2-actors", out, args.overrides)
    bare, one, two = results["bare_methods"], results["stage1_1"], results["stage1_2"]
    print("\n| measurement | images | seconds | images/s |\n|---|---|---|---|")
    print(f"| bare methods, 1 thread, batched | {bare['images']} | {bare['seconds']:.1f} | {bare['images_per_s']:.1f} |")
    for r in (one, two):
        print(f"| stage 1, {r['actors']} Ray actor(s), end to end | {r['images']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} |")
    print(f"\nstage 1 inside one actor (read, stylize, encode, write): "
          f"{one['per_actor_images_per_s']:.1f} images/s = "
          f"{one['per_actor_images_per_s'] / bare['images_per_s']:.2f} x the bare methods")
    print(f"stage 1 end to end with 1 actor (Ray start-up included) / bare methods: "
          f"{one['images_per_s'] / bare['images_per_s']:.2f}")
    print(f"stage 1 scaling, 2 actors / 1 actor: {two['images_per_s'] / one['images_per_s']:.2f}")
    train = results["training"]
    print("\n| training (1 process, 2 threads) | images/s |\n|---|---|")
    for key, label in (("tensors", "pre-built tensors"), ("shards", "shard loader"),
                       ("on_the_fly", "NST on the fly in the loop")):
        print(f"| {label} | {train[key]:.1f} |")
    print(f"\nshard loader cost: {100 * (1 - train['shards'] / train['tensors']):.1f}% of the step rate")
    print(f"pre-stylized shards / NST on the fly: {train['shards'] / train['on_the_fly']:.1f}x")
    print(f"evaluation (one checkpoint and the baselines on every test split and crops): "
          f"{results['eval_seconds']:.1f}s")
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    print(f"figures: {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
