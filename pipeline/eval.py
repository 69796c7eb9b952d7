"""Evaluate style encoders (and untrained baselines) on the test shards of stage 1.

    python pipeline/eval.py --config configs/tiny.yaml --shards DIR \\
        --checkpoint RUN/checkpoints/last.pt [--checkpoint name=PATH ...] --out EVAL [key=value ...]

Every ``test-<method>`` split and ``crops`` under ``--shards`` is embedded by every model; the
report (``report.md``, ``report.json``), the embeddings (``embeddings/<model>/<split>.npz``),
the pictures and the resolved config land in ``--out``.
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not pipeline/, wins imports

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.config import ConfigError, add_config_args, load_config, save_config  # noqa: E402
from evaluation.baselines import build_baseline  # noqa: E402
from evaluation.embed import (Embedder, EvalError, SplitEmbeddings, content_manifest_path,  # noqa: E402
                              embed_split, load_split_images)
from evaluation.metrics import default_device, nearest_neighbours  # noqa: E402
from evaluation.report import (CROPS_SPLIT, Results, SplitRoles, markdown_report,  # noqa: E402
                               plot_retrieval_grid, plot_style_vs_content, train_average,
                               write_json)
from evaluation.scoring import score_crops, score_test_split  # noqa: E402
from shards.reader import ShardError, list_splits  # noqa: E402
from train.model import load_encoder  # noqa: E402

TEST_PREFIX = "test-"


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


def split_roles(shards: Path, cfg: dict) -> tuple[SplitRoles, bool]:
    """Test splits by role, and whether a crops split exists."""
    present = list_splits(shards)
    tests = [s for s in present if s.startswith(TEST_PREFIX)]
    if not tests:
        raise EvalError(f"{shards} holds no test-<method> splits (found: {present or 'nothing'}); "
                        "point --shards at the output folder of pipeline/stylize.py")
    train = [TEST_PREFIX + m for m in cfg["stylize"]["train_methods"] if TEST_PREFIX + m in tests]
    held_out = TEST_PREFIX + cfg["stylize"]["held_out"]
    held_out = held_out if held_out in tests else None
    other = [s for s in tests if s not in train and s != held_out]
    return SplitRoles(train=train, held_out=held_out, other=other), CROPS_SPLIT in present


def checkpoint_name(text: str) -> tuple[str, Path]:
    """``name=path`` or a plain path (named after its run folder: RUN/checkpoints/x.pt -> RUN)."""
    name, sep, path = text.partition("=")
    if sep and "/" not in name:
        return name, Path(path)
    path = Path(text)
    return (path.parent.parent.name if path.parent.name == "checkpoints" else path.stem), path


def load_checkpoint_model(name: str, path: Path, device: torch.device) -> Embedder:
    if not path.is_file():
        raise EvalError(f"checkpoint {name}: file not found: {path}")
    try:
        encoder, train_cfg = load_encoder(path, map_location=device)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise EvalError(f"checkpoint {name} ({path}) does not fit the encoder its config "
                        f"describes (another architecture or config?): {exc}") from None
    return Embedder(name, encoder, train_cfg["train"]["image_size"], device)


def build_models(args: argparse.Namespace, cfg: dict, device: torch.device) -> list[Embedder]:
    models = [load_checkpoint_model(*checkpoint_name(text), device) for text in args.checkpoint]
    for name in cfg["eval"]["baselines"]:
        try:
            net = build_baseline(name, cfg).to(device)
        except KeyError as exc:
            raise EvalError(str(exc.args[0])) from None
        models.append(Embedder(name, net, cfg["eval"]["image_size"], device))
    names = [m.name for m in models]
    if not models:
        raise EvalError("nothing to evaluate: give --checkpoint and/or baselines")
    if len(set(names)) != len(names):
        raise EvalError(f"model names must be unique, got {names}: use --checkpoint NAME=PATH")
    return models


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
    roles, has_crops = split_roles(shards, cfg)
    for split in roles.columns():  # fail before any embedding work, not after
        manifest = content_manifest_path(shards / split)
        if not manifest.is_file():
            raise EvalError(f"{shards / split}: content manifest not found: {manifest}")
    device = default_device()
    models = build_models(args, cfg, device)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    print(f"evaluating {', '.join(m.name for m in models)} on {device}; splits: "
          f"{', '.join(roles.columns() + ([CROPS_SPLIT] if has_crops else []))}", flush=True)
    results: Results = {m.name: {} for m in models}
    meta = {"shards": str(shards), "held_out": roles.held_out, "train_splits": roles.train,
            "device": str(device), "seconds": {}}
    grid_split = roles.held_out or roles.columns()[-1]
    for split_name in roles.columns() + ([CROPS_SPLIT] if has_crops else []):
        is_test = split_name != CROPS_SPLIT
        split = embed_split(shards / split_name, models, cfg["eval"]["batch_size"], with_contents=is_test)
        save_embeddings(split, out)
        started = time.time()
        score = score_test_split if is_test else score_crops
        for model in models:
            results[model.name][split_name] = score(split, model.name, cfg["eval"]["chunk_size"], device)
        meta["seconds"][split_name] = {"embed": round(split.seconds, 2),
                                       "metrics": round(time.time() - started, 2)}
        print(f"  {split_name}: {len(split.style_ids)} images, embedded in {split.seconds:.1f}s, "
              f"metrics in {time.time() - started:.1f}s", flush=True)
        if split_name == grid_split:
            retrieval_grid(split, shards / split_name, models[0].name, cfg, out)
    write_json(results, meta, out / "report.json")
    (out / "report.md").write_text(markdown_report(results, roles, meta))
    plot_style_vs_content(results, roles.columns(), roles.held_out, out / "style_vs_content.png")
    print_summary(results, roles)
    print(f"report: {out / 'report.md'}", flush=True)
    return results


def print_summary(results: Results, roles: SplitRoles) -> None:
    held = roles.held_out
    print(f"{'model':<20} {'style mAP avg':>14} {'held-out mAP':>13} {'content mAP avg':>16} "
          "(content: lower is better)")
    for model, splits in results.items():
        held_map = splits[held]["style_map"] if held else float("nan")
        print(f"{model:<20} {train_average(results, model, roles, 'style_map'):>14.2f} "
              f"{held_map:>13.2f} {train_average(results, model, roles, 'content_map'):>16.2f}")


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
