"""Evaluate style encoders (and untrained baselines) on the test shards of stage 1.

    python pipeline/eval.py --config configs/tiny.yaml --shards DIR \\
        --checkpoint RUN/checkpoints/last.pt [--checkpoint name=PATH ...] --out EVAL [key=value ...]

Every ``test-<method>`` split and ``crops`` under ``--shards`` is embedded by every model; the
report (``report.md``, ``report.json``), the embeddings (``embeddings/<model>/<split>.npz``),
the pictures and the resolved config land in ``--out``.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not this folder, wins imports
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from common.config import ConfigError, add_config_args, load_config, save_config  # noqa: E402
from evaluation.baselines import conditioning_baselines  # noqa: E402
from evaluation.embed import (EvalError, RecurringImages, SplitEmbeddings,  # noqa: E402
                              content_manifest_path, embed_split, load_split_images, model_names)
from evaluation.metrics import default_device, nearest_neighbours  # noqa: E402
from evaluation.models import build_models  # noqa: E402
from evaluation.report import (Results, markdown_report, plot_retrieval_grid,  # noqa: E402
                               plot_style_vs_content, train_average, write_json)
from evaluation.scoring import CROPS, METRICS, TEST, score_split  # noqa: E402
from shards.reader import ShardError, SplitRoles, read_info, split_roles  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_args(parser)
    parser.add_argument("--shards", required=True, help="stage 1 output folder (holds test-*/, crops/)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]PATH",
                        help="a training checkpoint to evaluate; repeatable")
    parser.add_argument("--baselines", default=None,
                        help="comma-separated baselines, or 'none' (default: eval.baselines)")
    parser.add_argument("--out", required=True, help="folder for the report and embeddings")
    return parser.parse_args(argv)


def own_code_splits(names: list[str], shards: Path, splits: list[str]) -> dict[str, list[str]]:
    """For each baseline that computes an NST network's conditioning code, the test splits that
    network stylized (there the baseline scores the code the images were made from)."""
    networks = {split: set(read_info(shards / split).get("networks", {}).values()) for split in splits}
    return {name: [split for split in splits if method in networks[split]]
            for name, method in conditioning_baselines(names).items()
            if any(method in networks[split] for split in splits)}


def save_embeddings(split: SplitEmbeddings, out: Path) -> None:
    for model in split.images:
        folder = out / "embeddings" / model
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"{split.split}.npz", **split.arrays(model))


def retrieval_grid(split: SplitEmbeddings, split_dir: Path, model: str, cfg: dict, out: Path) -> None:
    """A few evenly spread queries of the split with their nearest stylizations."""
    embeddings = split.images[model]
    queries = np.unique(np.linspace(0, len(embeddings) - 1, cfg["eval"]["grid_queries"]).astype(int))
    neighbours = nearest_neighbours(embeddings, queries, cfg["eval"]["grid_neighbours"])
    images = load_split_images(split_dir, set(queries.tolist()) | set(neighbours.ravel().tolist()))
    rows = [(images[q], [(images[n], split.style_ids[n] == split.style_ids[q]) for n in row])
            for q, row in zip(queries, neighbours)]
    plot_retrieval_grid(rows, f"{model} on {split.split}: nearest neighbours "
                        "(green = same style, red = other style)", out / "retrieval_grid.png")


def evaluate(args: argparse.Namespace) -> Results:
    cfg = load_config(args.config, args.overrides)
    if args.baselines is not None:
        cfg["eval"]["baselines"] = [] if args.baselines == "none" else args.baselines.split(",")
    shards, out = Path(args.shards).resolve(), Path(args.out).resolve()
    roles = split_roles(shards)
    if not roles.test_columns():
        raise EvalError(f"{shards} holds no test-<method> splits: point --shards at the output "
                        "folder of pipeline/stylize.py")
    for split in roles.test_columns():  # fail before any embedding work, not after
        manifest = content_manifest_path(shards / split)
        if not manifest.is_file():
            raise EvalError(f"{shards / split}: content manifest not found: {manifest}")
    device = default_device()
    models = build_models(args.checkpoint, cfg, device)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    names = model_names(models)
    splits = [(name, TEST) for name in roles.test_columns()] + ([(roles.crops, CROPS)] if roles.crops else [])
    print(f"evaluating {', '.join(names)} on {device}; splits: "
          f"{', '.join(name for name, _ in splits)}", flush=True)
    results: Results = {name: {} for name in names}
    meta = {"shards": str(shards), "held_out": roles.held_out, "train_splits": roles.tests,
            "device": str(device), "seconds": {},
            "own_code_splits": own_code_splits(names, shards, roles.test_columns())}
    grid_split = roles.held_out or roles.test_columns()[-1]
    recurring = RecurringImages(models, cfg["eval"]["batch_size"])
    for split_name, kind in splits:
        split = embed_split(shards / split_name, models, cfg["eval"]["batch_size"],
                            with_contents=kind == TEST, recurring=recurring)
        save_embeddings(split, out)
        started = time.time()
        for name in names:
            results[name][split_name] = score_split(split, name, kind, cfg["eval"]["chunk_size"], device)
        meta["seconds"][split_name] = {"embed": round(split.seconds, 2),
                                       "metrics": round(time.time() - started, 2)}
        print(f"  {split_name}: {len(split.style_ids)} images, embedded in {split.seconds:.1f}s, "
              f"metrics in {time.time() - started:.1f}s", flush=True)
        if split_name == grid_split:
            retrieval_grid(split, shards / split_name, names[0], cfg, out)
    write_json(results, meta, out / "report.json")
    (out / "report.md").write_text(markdown_report(results, roles, meta))
    plot_style_vs_content(results, roles.test_columns(), roles.held_out, out / "style_vs_content.png")
    print_summary(results, roles)
    print(f"report: {out / 'report.md'}", flush=True)
    return results


def print_summary(results: Results, roles: SplitRoles) -> None:
    """The summary metrics of the table: averaged over the training methods' splits, and on
    the held-out split."""
    columns = [(f"{m.title} avg", m.name, None) for m in METRICS if m.summary]
    if roles.held_out:
        columns += [(f"{m.title} held out", m.name, roles.held_out) for m in METRICS if m.summary]
    print(f"{'model':<20} " + " ".join(f"{title:>22}" for title, _, _ in columns)
          + "  (" + ", ".join(f"{m.title}: lower is better" for m in METRICS
                              if m.summary and m.lower_is_better) + ")")
    for model, splits in results.items():
        values = [train_average(results, model, roles, name) if split is None else splits[split][name]
                  for _, name, split in columns]
        print(f"{model:<20} " + " ".join(f"{value:>22.2f}" for value in values))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        evaluate(args)
    except (EvalError, ConfigError, ShardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
