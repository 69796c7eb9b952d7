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
import time  # noqa: E402

import torch  # noqa: E402

from common.config import REPO_ROOT, add_config_args, load_config  # noqa: E402
from pipeline.plan import CROP_METHOD, CROPS  # noqa: E402
from pipeline.stylize import build_plan, run_stage1  # noqa: E402
from pipeline.worker import ShardWorker, open_image, square  # noqa: E402
from shards.codec import pil_to_tensor  # noqa: E402


def bench_stage1(cfg: dict, out: Path, actors: int) -> dict:
    cfg = {**cfg, "stylize": {**cfg["stylize"], "ray": {**cfg["stylize"]["ray"], "num_actors": actors}}}
    target = out / f"stage1-{actors}-actors"
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    summary = run_stage1(cfg, target)
    seconds = time.perf_counter() - start
    # Crops are cut, not stylized: count the stylized images only, as the bare run does.
    images = sum(s["images"] for split, s in summary.items() if split != CROPS)
    import ray
    ray.shutdown()
    return {"actors": actors, "seconds": seconds, "images": images, "images_per_s": images / seconds}


def bench_bare_methods(cfg: dict) -> dict:
    """The same stylizations as stage 1, batched in this process: no Ray, no files, no JPEG."""
    torch.set_num_threads(1)  # one actor has one CPU
    plan, _ = build_plan(cfg)
    worker = ShardWorker(cfg, device="cpu")
    size, batch_size = cfg["stylize"]["image_size"], cfg["stylize"]["ray"]["batch_size"]
    jobs = []
    for shard in plan.shards:
        for group in shard.groups:
            items = [i for i in group.items if i.method != CROP_METHOD]
            for start in range(0, len(items), batch_size):
                batch = items[start:start + batch_size]
                contents = torch.stack([pil_to_tensor(square(open_image(i.content_path), size))
                                        for i in batch])
                jobs.append((batch[0].method, contents, pil_to_tensor(square(open_image(group.style_path), size))))
    for method in {m for m, _, _ in jobs}:
        worker.method(method)  # build every model before timing
    start = time.perf_counter()
    with torch.no_grad():
        for method, contents, style in jobs:
            worker.method(method)(contents, style, strength=1.0, seed=0)
    seconds = time.perf_counter() - start
    images = sum(len(c) for _, c, _ in jobs)
    return {"seconds": seconds, "images": images, "images_per_s": images / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo" / "bench")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = {"bare_methods": bench_bare_methods(cfg)}
    for actors in (1, 2):
        results[f"stage1_{actors}"] = bench_stage1(cfg, out, actors)
    bare, one, two = results["bare_methods"], results["stage1_1"], results["stage1_2"]
    print("\n| measurement | images | seconds | images/s |\n|---|---|---|---|")
    print(f"| bare methods, 1 thread, batched | {bare['images']} | {bare['seconds']:.1f} | {bare['images_per_s']:.1f} |")
    for r in (one, two):
        print(f"| stage 1, {r['actors']} Ray actor(s), end to end | {r['images']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} |")
    print(f"\nstage 1 (1 actor) / bare methods: {one['images_per_s'] / bare['images_per_s']:.2f}")
    print(f"stage 1 scaling, 2 actors / 1 actor: {two['images_per_s'] / one['images_per_s']:.2f}")
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    print(f"figures: {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
