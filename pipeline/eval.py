"""Evaluate style encoders (and untrained baselines) on the test shards of stage 1.

    python pipeline/eval.py --shards DIR --checkpoint RUN/checkpoints/last.pt \\
        [--checkpoint name=PATH ...] --out EVAL [--config FILE] [key=value ...]
    python pipeline/eval.py --shards demo/shards --checkpoint nst=demo/runs/nst/checkpoints/last.pt \\
        --baselines vgg_moments,colour_hist --out demo/eval-again
    python pipeline/eval.py --shards s3://bucket/shards \
        --checkpoint nst=s3://bucket/runs/nst/checkpoints/last.pt --out s3://bucket/eval

Reads: ``--shards``, stage 1's output folder: its splits (found by the role recorded in each
``_info.json``) and its recorded ``config.yaml``, which is the config unless ``--config`` is
given (a ``--config`` that contradicts the shards on seed, world, data or stylize keys is an
error naming the key); the checkpoints (each named by its run folder, or NAME=PATH); the content
manifest stage 1 used (content IR-1).
Every ``test-<method>`` split and ``crops`` is embedded by every model; the fused pairs of
``eval.fused`` are computed from their parts' codes and scored alike. With
``eval.tagging.enabled``, a tagging head per model is trained on the ``train`` split's style
tags and tested on the test styles (zero-shot tags held out of training).
Writes to ``--out``: the report (``report.md``, ``report.json``: every metric per model and
split, with its chance level; ``report.html``: the report with its pictures, one page that opens
from disk), the embeddings (``embeddings/<model>/<split>.npz``), the tagging scores
(``tagging/<model>.npz``) and heads (``heads/<model>.pt``), the pictures and the resolved config.
``--shards``, ``--checkpoint`` and ``--out`` may be URLs (``common.storage``): the outputs are
then written to a local temporary folder and uploaded when the run succeeds.

Labelled retrieval (docs/labelled.md): with ``eval.labelled.table`` (a CSV or parquet of image
paths and label columns: artist, genre...), or on the synthetic world's held-out style groups
(technique, palette, subject), every model embeds each image of the table once and is scored
leave-one-out, on a fixed query/database split (``labelled/split.csv``, reused by reruns) and
with the images stage 1 kept out of training as queries (``unseen``): mAP, mAP@k, P@1, recall@k and hit@k with exact chance levels, per-label best and worst,
and ``labelled_grid.png``. ``--shards`` is then optional, and ``--embeddings NAME=DIR`` scores
codes written by ``pipeline/embed.py`` without re-embedding:

    python pipeline/eval.py --config mine.yaml eval.labelled.table=data/mine/labels.csv \
        --checkpoint nst=run/nst/checkpoints/last.pt --embeddings mine=embeddings/ --out eval-art
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not this folder, wins imports
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from common import storage  # noqa: E402
from common.config import (ConfigError, add_config_args, config_for_shards, load_config,  # noqa: E402
                           save_config)
from common.schema import Config  # noqa: E402
from evaluation.bootstrap import interval_text  # noqa: E402
from evaluation.embed import (EvalError, RecurringImages, SplitEmbeddings,  # noqa: E402
                              check_split, content_manifest_path, embed_split, load_split_images)
from evaluation.fusion import FusedSpec, fuse_split, parse_fused  # noqa: E402
from evaluation.labelled_eval import (FOLDER as LABELLED_FOLDER, LabelledTask,  # noqa: E402
                                      TableSource, embed_table, prepare_labelled, run_labelled,
                                      stored_codes)
from evaluation.metrics import default_device, nearest_neighbours  # noqa: E402
from evaluation.models import build_models  # noqa: E402
from evaluation.report import (HTML_NAME, Results, markdown_report,  # noqa: E402
                               plot_retrieval_grid, plot_style_vs_content, plot_tagging,
                               tagging_markdown, train_average, with_chance_row, write_html_report,
                               write_json)
from evaluation.scoring import (CROPS, METRICS, TEST, Rankings, score_rankings,  # noqa: E402
                                split_differences)
from evaluation.tagging_eval import (COLUMNS as TAG_COLUMNS, TaggingResult,  # noqa: E402
                                     TaggingTask, prepare_tagging, run_tagging)
from models.baselines import conditioning_baselines  # noqa: E402
from models.embedder import Embedder, model_names  # noqa: E402
from models.factory import checkpoint_name  # noqa: E402
from shards.manifest import read_style_manifest  # noqa: E402
from shards.reader import ShardError, SplitRoles, read_index, read_info, split_roles  # noqa: E402
from shards.schema import TRAIN_SPLIT  # noqa: E402
from stylecode.identity import ModelSpec, Recipe  # noqa: E402
from tagging import TaggingError  # noqa: E402
from world.generate import MARKER as WORLD_MARKER, world_dir  # noqa: E402
from world.labels import (NOTES as WORLD_NOTES, TABLE_NAME as WORLD_TABLE,  # noqa: E402
                          world_groups, write_world_labels)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--shards", default=None,
                        help="stage 1 output folder (holds test-*/, crops/); optional with a "
                             "labelled table (eval.labelled.table)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]PATH",
                        help="a training checkpoint to evaluate; repeatable")
    parser.add_argument("--baselines", default=None,
                        help="comma-separated baselines, or 'none' (default: eval.baselines)")
    parser.add_argument("--embeddings", action="append", default=[], metavar="[NAME=]DIR",
                        help="codes written by pipeline/embed.py, scored on the labelled table "
                             "without re-embedding; repeatable")
    parser.add_argument("--out", required=True, help="folder for the report and embeddings")
    return parser.parse_args(argv)


def conditioning_models(models: list[Embedder], names: list[str]) -> dict[str, str]:
    """Model name -> the NST method whose conditioning code it computes: the baselines that are
    such a code, and the trained encoders that take it as input (a ``style_net`` branch)."""
    encoders = {model.names[0]: model.net.style_net.method for model in models
                if getattr(model.net, "style_net", None) is not None}
    return {**encoders, **conditioning_baselines(names)}


def own_code_splits(conditioning: dict[str, str], shards: str, splits: list[str]) -> dict[str, list[str]]:
    """For each model of ``conditioning`` (see :func:`conditioning_models`), the test splits its
    NST network stylized (there the model sees the code the images were made from)."""
    networks = {split: set(read_info(storage.join(shards, split)).get("networks", {}).values()) for split in splits}
    return {name: [split for split in splits if method in networks[split]]
            for name, method in conditioning.items()
            if any(method in networks[split] for split in splits)}


def save_embeddings(split: SplitEmbeddings, out: Path) -> None:
    for model in split.images:
        folder = out / "embeddings" / model
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"{split.split}.npz", **split.arrays(model))


def retrieval_grid(split: SplitEmbeddings, split_dir: str, model: str, cfg: Config, out: Path) -> None:
    """A few evenly spread queries of the split with their nearest stylizations."""
    embeddings = split.images[model]
    queries = np.unique(np.linspace(0, len(embeddings) - 1, cfg.eval.grid_queries).astype(int))
    neighbours = nearest_neighbours(embeddings, queries, cfg.eval.grid_neighbours)
    images = load_split_images(split_dir, set(queries.tolist()) | set(neighbours.ravel().tolist()))
    rows = [(images[q], [(images[n], split.style_ids[n] == split.style_ids[q]) for n in row])
            for q, row in zip(queries, neighbours)]
    plot_retrieval_grid(rows, f"{model} on {split.split}: nearest neighbours "
                        "(green = same style, red = other style)", out / "retrieval_grid.png")


def model_hashes(checkpoints: list[str], baselines: list[str], fused: list[FusedSpec],
                 cfg: Config) -> dict[str, str]:
    """What each model's codes mean (``stylecode``'s hashes), recorded in its tagging head so a
    search loads the head only with the model it was trained on."""
    specs = {spec.name: spec for spec in map(ModelSpec.parse, checkpoints)}
    specs.update({name: ModelSpec(name) for name in baselines})
    recipes = {name: Recipe((spec,)) for name, spec in specs.items()}
    recipes.update({f.name: Recipe((specs[f.models[0]], specs[f.models[1]]), f.weights) for f in fused})
    return {name: recipe.hash(cfg) for name, recipe in recipes.items()}


def picture_models(checkpoints: list[str], baselines: list[str], fused: list[FusedSpec]) -> list[str]:
    """tagging.png's models, side by side: the first checkpoint, baseline and fused pair."""
    kinds = [[checkpoint_name(text)[0] for text in checkpoints], baselines, [f.name for f in fused]]
    return [kind[0] for kind in kinds if kind]


def tag(task: TaggingTask, args: argparse.Namespace, cfg: Config, models: list[Embedder],
        fused: list[FusedSpec], recurring: RecurringImages, out: Path) -> TaggingResult:
    """Zero-shot tagging of every model; writes scores, heads and tagging.png."""
    baselines = list(cfg.eval.baselines)
    result = run_tagging(task, models, fused, model_hashes(args.checkpoint, baselines, fused, cfg),
                         recurring, cfg.eval.batch_size,
                         picture_models(args.checkpoint, baselines, fused), out)
    if result.examples:
        plot_tagging(result, out / "tagging.png")
    print(f"  tagging: {result.meta['train_styles']} training styles, {result.meta['test_styles']} "
          f"test styles, {result.meta['vocabulary']} tags, in {result.meta['seconds']['total']:.1f}s",
          flush=True)
    for unscored in [t for t, n in result.meta["zero_shot_tags"].items() if n == 0]:
        print(f"  note: zero-shot tag '{unscored}' is on no test style: nothing scores it", flush=True)
    return result


def check_shards(shards: str) -> SplitRoles:
    """The test splits of ``shards``, each checked (content manifest, shards against their
    stats) before any embedding work."""
    roles = split_roles(shards)
    if not roles.test_columns():
        raise EvalError(f"{shards} holds no test-<method> splits: point --shards at the output "
                        "folder of pipeline/stylize.py")
    for split in roles.test_columns():
        manifest = content_manifest_path(storage.join(shards, split))
        if not storage.is_file(manifest):
            raise EvalError(f"{storage.join(shards, split)}: content manifest not found: {manifest}")
    for split in roles.test_columns() + ([roles.crops] if roles.crops else []):
        check_split(storage.join(shards, split))
    return roles


def run_config(args: argparse.Namespace) -> dict:
    """The config: the shards' (``--config`` may not contradict it), else ``--config``."""
    if args.shards:
        cfg = config_for_shards(args.config, args.overrides, args.shards)
    else:
        cfg = load_config(args.config, args.overrides)
        if not cfg.eval.labelled.table:
            raise EvalError("nothing to evaluate: give --shards (stage 1's output) and/or a "
                            "labelled table (eval.labelled.table=FILE)")
    if args.baselines is not None:
        cfg.eval.baselines = [] if args.baselines == "none" else args.baselines.split(",")
    return cfg


def evaluate_splits(args: argparse.Namespace, cfg: Config, shards: str, roles: SplitRoles,
                    models: list[Embedder], fused: list[FusedSpec], recurring: RecurringImages,
                    out: Path, meta: dict) -> Results:
    """Every model on every test split and the crops: embeddings saved, metrics scored."""
    names = model_names(models) + [f.name for f in fused]
    splits = [(name, TEST) for name in roles.test_columns()] + ([(roles.crops, CROPS)] if roles.crops else [])
    print(f"evaluating {', '.join(names)} on {meta['device']}; splits: "
          f"{', '.join(name for name, _ in splits)}", flush=True)
    results: Results = {name: {} for name in names}
    meta.update({"shards": str(shards), "held_out": roles.held_out, "train_splits": roles.tests,
                 "synthetic_styles": cfg.data.style_manifest is None,
                 "own_code_splits": own_code_splits(conditioning_models(models, names), shards,
                                                    roles.test_columns())})
    grid_split = roles.held_out or roles.test_columns()[-1]
    for split_name, kind in splits:
        split = embed_split(storage.join(shards, split_name), models, cfg.eval.batch_size,
                            with_contents=kind == TEST, recurring=recurring)
        fuse_split(split, fused)
        save_embeddings(split, out)
        started = time.time()
        rankings = {name: Rankings(split, name, cfg.eval.chunk_size, default_device()) for name in names}
        for name in names:
            results[name][split_name] = score_rankings(rankings[name], kind)
        if split_name == grid_split and len(names) > 1 and cfg.eval.bootstrap_resamples:
            meta["differences"] = {"split": split_name, "reference": names[0],
                                   "resamples": cfg.eval.bootstrap_resamples,
                                   "models": split_differences(rankings, names[0],
                                                               cfg.eval.bootstrap_resamples, cfg.seed)}
        meta["seconds"][split_name] = {"embed": round(split.seconds, 2),
                                       "metrics": round(time.time() - started, 2)}
        print(f"  {split_name}: {len(split.style_ids)} images, embedded in {split.seconds:.1f}s, "
              f"metrics in {time.time() - started:.1f}s", flush=True)
        if split_name == grid_split:
            retrieval_grid(split, storage.join(shards, split_name), names[0], cfg, out)
    return results


def evaluate_labelled(task: LabelledTask, args: argparse.Namespace, cfg: Config,
                      models: list[Embedder], fused: list[FusedSpec], out: Path,
                      meta: dict) -> list[str]:
    """Labelled retrieval of every model (and stored embeddings); returns the report lines."""
    started = time.time()
    codes = embed_table(task, models, fused, cfg.eval.batch_size)
    for text in args.embeddings:
        name, stored = stored_codes(task, text)
        if name in codes:
            raise EvalError(f"--embeddings {text}: a model named {name!r} is evaluated already: "
                            "use NAME=DIR")
        codes[name] = stored
    meta["labelled"], lines = run_labelled(task, codes, cfg, out)
    meta["seconds"]["labelled"] = round(time.time() - started, 2)
    print(f"  labelled: {len(task.table)} images of {task.table.source.name}, "
          f"{', '.join(task.table.columns)}, in {time.time() - started:.1f}s", flush=True)
    return lines


def table_source(cfg: Config, shards: str | None, out: Path) -> TableSource | None:
    """The labelled table of the run: ``eval.labelled.table``, or the synthetic world's style
    images of the groups stage 1 held out (``eval.labelled.world``), or None."""
    lcfg = cfg.eval.labelled
    if lcfg.table:
        return TableSource(Path(lcfg.table), lcfg.columns)
    if not (lcfg.world and shards is not None and cfg.data.style_manifest is None):
        return None
    world = world_dir(cfg)
    if not (storage.is_dir(storage.join(shards, TRAIN_SPLIT)) and (world / WORLD_MARKER).is_file()):
        print(f"  labelled: skipped: the world's table needs its train split and the world "
              f"({world}) to tell which groups were held out", flush=True)
        return None
    train_groups = set(read_index(storage.join(shards, TRAIN_SPLIT)).column("group").to_pylist())
    if not train_groups <= world_groups(world):
        print(f"  labelled: skipped: the shards were not made from the world in {world}", flush=True)
        return None
    path = out / LABELLED_FOLDER / WORLD_TABLE
    columns = write_world_labels(world, train_groups, path)
    if not columns:
        print(f"  labelled: no label of the world's test groups is on two images: nothing to "
              f"query in {path}", flush=True)
        return None
    return TableSource(path, columns, WORLD_NOTES)


def trained_paths(cfg: Config, shards: str | None) -> set[str] | None:
    """The resolved paths of the style images of stage 1's train split (the images every
    encoder of the run has seen), or None without shards, a train split or a style manifest
    (the synthetic world's table holds no trained image)."""
    train = storage.join(shards, TRAIN_SPLIT) if shards else None
    if train is None or cfg.data.style_manifest is None or not storage.is_dir(train):
        return None
    train_ids = set(read_index(train).column("style_id").to_pylist())
    styles = read_style_manifest(cfg.data.style_manifest, check_files=False)
    return {str(Path(row.path).resolve()) for row in styles if row.style_id in train_ids}


def evaluate(args: argparse.Namespace) -> Results:
    cfg = run_config(args)
    shards = storage.resolve(args.shards) if args.shards else None
    target = storage.resolve(args.out)
    storage.check_remote(read=[shards, *(checkpoint_name(text)[1] for text in args.checkpoint),
                               *(text.rpartition("=")[2] for text in args.embeddings)],
                         write=[target])
    # Pictures, arrays and heads are written by libraries that want a local file system: on
    # object storage they are made in a local folder and uploaded when the run succeeds.
    with storage.LocalMirror(target) as mirror:
        results = evaluate_into(args, cfg, shards, mirror.folder)
        mirror.push()
    print(f"report: {storage.join(target, 'report.md')} (as a page with its pictures: "
          f"{storage.join(target, HTML_NAME)})", flush=True)
    return results


def evaluate_into(args: argparse.Namespace, cfg: Config, shards: str | None, out: Path) -> Results:
    """The evaluation proper, writing to the local folder ``out``."""
    roles = check_shards(shards) if shards else None   # fail before any embedding work
    device = default_device()
    models = build_models(args.checkpoint, cfg, device) if (args.checkpoint or cfg.eval.baselines) else []
    if not (models or args.embeddings):
        raise EvalError("nothing to evaluate: give --checkpoint, baselines or --embeddings")
    fused = parse_fused(cfg.eval.fused, model_names(models)) if models else []
    tagging = (prepare_tagging(cfg, shards, roles, str(device))
               if shards and cfg.eval.tagging.enabled else None)
    source = table_source(cfg, shards, out)
    labelled = prepare_labelled(cfg, source, out, trained_paths(cfg, shards)) if source else None
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    meta = {"device": str(device), "seconds": {}}
    recurring = RecurringImages(models, cfg.eval.batch_size)
    results = (evaluate_splits(args, cfg, shards, roles, models, fused, recurring, out, meta)
               if shards else {})
    tagged = tag(tagging, args, cfg, models, fused, recurring, out) if tagging else None
    labelled_lines = evaluate_labelled(labelled, args, cfg, models, fused, out, meta) if labelled else []
    write_json(results, meta, out / "report.json", tagged)
    markdown = [markdown_report(results, roles, meta)] if shards else ["# Style retrieval evaluation", ""]
    markdown += [*(tagging_markdown(tagged) if tagged else []), *labelled_lines]
    (out / "report.md").write_text("\n".join(markdown))
    if shards:
        plot_style_vs_content(results, roles.test_columns(), roles.held_out, out / "style_vs_content.png")
        print_summary(results, roles)
        print_differences(meta.get("differences"))
    if tagged:
        print_tagging_summary(tagged)
    if labelled:
        print_labelled_summary(meta["labelled"])
    write_html_report(out)
    return results


def print_labelled_summary(payload: dict) -> None:
    """mAP and P@1 per protocol and label column, with chance."""
    for protocol, column, entry in [(p, c, e) for p in ("loo", "split", "unseen", "seen")
                                    if p in payload
                                    for c, e in payload[p].items()]:
        print(f"{'model':<20} {column + ' mAP':>22} {column + ' P@1':>22}  (labelled, {protocol}, "
              f"{entry['queries']} queries)")
        for model, metrics in entry.items():
            if isinstance(metrics, dict):
                print(f"{model:<20} {metrics['map']:>22.2f} {metrics['p@1']:>22.2f}")


def print_summary(results: Results, roles: SplitRoles) -> None:
    """The summary metrics of the table: averaged over the training methods' splits, and on
    the held-out split."""
    columns = [(f"{m.title} avg", m.name, None) for m in METRICS if m.summary]
    if roles.held_out:
        columns += [(f"{m.title} held out", m.name, roles.held_out) for m in METRICS if m.summary]
    print(f"{'model':<20} " + " ".join(f"{title:>22}" for title, _, _ in columns)
          + "  (" + ", ".join(f"{m.title}: lower is better" for m in METRICS
                              if m.summary and m.lower_is_better) + ")")
    rows = with_chance_row(results, "chance")
    for model, splits in rows.items():
        values = [train_average(rows, model, roles, name) if split is None
                  else splits.get(split, {}).get(name, float("nan")) for _, name, split in columns]
        print(f"{model:<20} " + " ".join(f"{value:>22.2f}" for value in values))


def print_differences(differences: dict | None) -> None:
    """The reference model minus each other one on the held-out split, with 95% intervals."""
    if not differences or not differences["models"]:
        return
    ref = differences["reference"]
    print(f"{ref} minus each model on {differences['split']}, points, [95% interval] "
          "(style: > 0 favours it; content: < 0 favours it)")
    for model, entry in differences["models"].items():
        print(f"  {model:<18} " + "   ".join(f"{metric} {interval_text(values)}"
                                            for metric, values in entry.items()))


def print_tagging_summary(tagged: TaggingResult) -> None:
    """Zero-shot tagging per model, with the chance levels of every column."""
    keys = ("tag_map", "tag_recall@5", "zero_shot_tag_map", "text_to_image_map")
    print(f"{'model':<20} " + " ".join(f"{TAG_COLUMNS[key]:>22}" for key in keys) + "  (tagging)")
    chance = next(iter(tagged.metrics.values()))
    rows = [*tagged.metrics.items(), ("chance", {key: chance[f"{key}_chance"] for key in keys
                                                 if f"{key}_chance" in chance})]
    for model, metrics in rows:
        print(f"{model:<20} " + " ".join(f"{metrics.get(key, float('nan')):>22.2f}" for key in keys))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        evaluate(args)
    except (EvalError, ConfigError, ShardError, TaggingError, storage.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
