"""Stage 1: stylize content x style pairs with NST methods on Ray actors, write shards.

    python pipeline/stylize.py --config configs/tiny.yaml --out /abs/shards [key=value ...]
    ray job submit --working-dir . -- python pipeline/stylize.py --out /abs/shards ...

The plan is fixed up front; one actor call writes one whole shard. Complete shards (those with
a stats file) are skipped, so rerunning the same command finishes a run that died half-way.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, pipeline/ is first on sys.path and this file
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stylize package

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from common.config import add_config_args, load_config, save_config  # noqa: E402
from common.files import FolderLock, LockedError, write_json  # noqa: E402
from common.ray_cluster import cluster_gpus, init_ray  # noqa: E402
from pipeline.plan import Plan, ShardPlan, make_plan, strength_choices  # noqa: E402
from pipeline.worker import ShardWorker  # noqa: E402
from shards.manifest import read_content_manifest, read_style_manifest  # noqa: E402
from shards.reader import complete_shards  # noqa: E402
from shards.writer import is_complete, write_split_info  # noqa: E402
from stylize import configured_method, list_methods  # noqa: E402

STATE_NAME = "_stage1.json"


class Stage1Error(RuntimeError):
    pass


def resolve_inputs(cfg: dict) -> tuple[Path, Path]:
    """The content and style manifests: the configured ones, or the synthetic world's."""
    data = cfg["data"]
    if data["content_manifest"] and data["style_manifest"]:
        return Path(data["content_manifest"]).resolve(), Path(data["style_manifest"]).resolve()
    if data["content_manifest"] or data["style_manifest"]:
        raise Stage1Error("set both data.content_manifest and data.style_manifest, or neither "
                          "(neither: use the synthetic world)")
    from world.generate import ensure_world, world_dir
    world = ensure_world(cfg["world"], cfg["seed"], world_dir(cfg))
    return Path(world.content_manifest), Path(world.style_manifest)


def check_methods(cfg: dict) -> None:
    scfg = cfg["stylize"]
    wanted = list(scfg["train_methods"]) + ([scfg["held_out"]] if scfg["held_out"] else [])
    for name in wanted:
        if name not in scfg["methods"]:
            raise Stage1Error(f"method '{name}' is used but has no entry in stylize.methods")
        registered = configured_method(name, scfg["methods"])[0]
        if registered not in list_methods():
            raise Stage1Error(f"unknown NST method '{registered}' (stylize.methods.{name}); "
                              f"registered: {', '.join(list_methods())}")
    if scfg["held_out"] in scfg["train_methods"]:
        raise Stage1Error(f"held-out method '{scfg['held_out']}' is also a training method")
    try:
        strength_choices(scfg["strength"])
    except ValueError as exc:
        raise Stage1Error(str(exc)) from None


def build_plan(cfg: dict) -> tuple[Plan, Path]:
    content_path, style_path = resolve_inputs(cfg)
    contents = read_content_manifest(content_path)
    styles = read_style_manifest(style_path)
    print(f"[stage1] {len(contents)} contents from {content_path}")
    print(f"[stage1] {len(styles)} styles from {style_path}")
    plan = make_plan(contents, styles, cfg, cfg["seed"])
    for line in plan.describe():
        print(f"[stage1]   {line}")
    for warning in plan.warnings:
        print(f"[stage1] warning: {warning}", file=sys.stderr)
    return plan, content_path


def claim_output(out: Path, plan: Plan) -> None:
    """Refuse to mix shards of two different plans in one output folder."""
    state_path = out / STATE_NAME
    digest = plan.digest()
    if state_path.exists():
        previous = json.loads(state_path.read_text()).get("plan_digest")
        if previous != digest:
            raise Stage1Error(f"{out} holds shards of a different plan ({previous}, now {digest}): "
                              "the config or inputs changed; use a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(state_path, {"plan_digest": digest, "shards": len(plan.shards)})
    for stale in out.glob("*/.shard-*.tmp"):  # left by a run that was killed mid-shard
        stale.unlink(missing_ok=True)


def start_ray(cfg: dict) -> None:
    rcfg = cfg["stylize"]["ray"]
    init_ray(rcfg["address"], rcfg["num_actors"] * rcfg["num_cpus_per_actor"], rcfg["object_store_mb"])
    need, have = rcfg["num_gpus_per_actor"], cluster_gpus()
    if need and have < need:
        raise Stage1Error(f"stylize.ray.num_gpus_per_actor={need} but the Ray cluster has {have:g} "
                          "GPUs: actors would wait forever. Set stylize.ray.num_gpus_per_actor=0 "
                          "to run on CPUs.")


def run_shards(cfg: dict, todo: list[ShardPlan], out: Path) -> list[dict]:
    """Run the shards on a pool of actors, printing progress as each shard completes."""
    import ray
    from ray.util import ActorPool

    rcfg = cfg["stylize"]["ray"]
    actor_cls = ray.remote(num_cpus=rcfg["num_cpus_per_actor"],
                           num_gpus=rcfg["num_gpus_per_actor"])(ShardWorker)
    actors = [actor_cls.remote(cfg) for _ in range(min(rcfg["num_actors"], len(todo)))]
    pool = ActorPool(actors)
    start, done, images, failed, results = time.time(), 0, 0, 0, []
    for stats in pool.map_unordered(lambda actor, shard: actor.write_shard.remote(shard, str(out)),
                                    todo):
        done, images, failed = done + 1, images + stats["images"], failed + stats["failed"]
        results.append(stats)
        elapsed = time.time() - start
        eta = elapsed / done * (len(todo) - done)
        print(f"[stage1] {done}/{len(todo)} shards | {stats['split']}/{stats['shard']} | "
              f"{images / elapsed:.1f} samples/s | failures {failed} | eta {eta:.0f}s", flush=True)
    return results


def summarise_splits(cfg: dict, plan: Plan, out: Path, content_manifest: Path) -> dict:
    """Write each split's ``_info.json`` from its complete shards' stats files."""
    summary = {}
    for split in plan.splits():
        split_dir = out / split
        stats = [json.loads(Path(tar).with_suffix(".stats.json").read_text())
                 for tar in complete_shards(split_dir)]
        methods = sorted({item.method for shard in plan.shards if shard.split == split
                          for group in shard.groups for item in group.items})
        summary[split] = write_split_info(split_dir, split, stats, {
            "methods": methods, "held_out": cfg["stylize"]["held_out"],
            "networks": {m: configured_method(m, cfg["stylize"]["methods"])[0] for m in methods},
            "content_manifest": str(content_manifest), "image_size": cfg["stylize"]["image_size"],
            "seed": cfg["seed"]})
    return summary


def run_stage1(cfg: dict, out: str | Path) -> dict:
    """Plan, stylize every incomplete shard, summarise. Returns per-split summaries.

    The output folder is locked for the run: a second run on it is refused while this one
    lives (it would delete this run's unfinished shards as stale), not after it dies.
    """
    out = Path(out).resolve()
    check_methods(cfg)
    plan, content_manifest = build_plan(cfg)
    with FolderLock(out, "stage-1 run"):
        claim_output(out, plan)
        save_config(cfg, out)
        return _stylize_plan(cfg, plan, out, content_manifest)


def _stylize_plan(cfg: dict, plan: Plan, out: Path, content_manifest: Path) -> dict:
    todo = [s for s in plan.shards if not is_complete(out / s.split, s.number)]
    print(f"[stage1] plan: {len(plan.shards)} shards in {len(plan.splits())} splits "
          f"({sum(s.num_items for s in plan.shards)} images); {len(plan.shards) - len(todo)} "
          f"already complete, {len(todo)} to do")
    started = time.time()
    if todo:
        start_ray(cfg)
        run_shards(cfg, todo, out)
    summary = summarise_splits(cfg, plan, out, content_manifest)
    elapsed = time.time() - started
    images = sum(s["images"] for s in summary.values())
    failed = sum(s["failed"] for s in summary.values())
    print(f"[stage1] done in {elapsed:.1f}s: {images} images, {failed} failed, "
          f"splits {', '.join(summary)} -> {out}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", default="outputs/shards",
                        help="output folder for the splits (made absolute: under `ray job submit` "
                             "pass an absolute path, the job runs in a temporary copy of the repo)")
    args = parser.parse_args(argv)
    try:
        run_stage1(load_config(args.config, args.overrides), args.out)
    except (Stage1Error, LockedError, ValueError, FileNotFoundError) as exc:
        print(f"[stage1] error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
