"""Artist retrieval on real paintings over several seeds: the README's "On real paintings" table.

    python benchmarks/real_art.py --out DIR [--seeds 0 1 2] [--art ../shared/real-art]
                                  [--photos FOLDER] [--config configs/paintings.yaml]
                                  [key=value ...]

(key=value after --seeds: put ``--`` before them, or them before ``--seeds``.)
Runs the README's "Your own data" commands as a user would, one entry script at a time:
1. photos: ``--photos``, or the tiny synthetic world's content images (``pipeline/synth.py``
   with ``configs/tiny.yaml``, generated once under ``DIR/world``);
2. manifests, once: ``pipeline/make_manifests.py --contents PHOTOS --styles ART/paintings
   --out DIR/data --label-column artist`` and ``DIR/data/mine.yaml`` (inherits ``--config``);
3. per seed: ``pipeline/demo.py --config DIR/data/mine.yaml --out DIR/seed-S seed=S
   [key=value ...]``, its output in ``DIR/seed-S.log`` (a rerun resumes: demo.py skips
   finished steps; other photos or paintings need another ``DIR``).
Then reads every ``DIR/seed-S/eval/report.json`` and prints, per labelled protocol (``loo``,
``split``, ``unseen``: those present), mAP, P@1 and hit@10 per seed and pooled, and the
held-out NST split's style and content mAP per seed, with the report's differences (its first
model minus each other one, 95% intervals). Writes ``DIR/summary.json`` and
``DIR/summary.md``. Exits 2 when the art folder is missing.
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root wins imports

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any, Sequence  # noqa: E402

from common.config import REPO_ROOT  # noqa: E402
from common.files import write_atomic, write_json  # noqa: E402
from evaluation.bootstrap import interval_text  # noqa: E402

LABEL = "artist"
PROTOCOLS = ("loo", "split", "unseen", "seen")
CHANCE = "chance"
MANIFESTS = ("contents.parquet", "styles.parquet", "labels.csv")
MINE_YAML = """inherit: {config} # the real-data recipe
data:
  content_manifest: contents.parquet
  style_manifest: styles.parquet
eval:
  labelled: {{table: labels.csv}}       # artist retrieval of every model (docs/labelled.md)
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for everything")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--art", type=Path, default=REPO_ROOT.parent / "shared" / "real-art",
                        help="the real-art folder (its paintings/<artist>/ subfolders)")
    parser.add_argument("--photos", type=Path, default=None,
                        help="content photos; default: the tiny world's content images")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "paintings.yaml",
                        help="the recipe mine.yaml inherits")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="passed to every demo.py run")
    return parser.parse_args(argv)


def script(name: str) -> str:
    """The path of one of the project's entry scripts."""
    return str(REPO_ROOT / "pipeline" / name)


def run_logged(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` with its output in ``log``; exit with its status and log when it fails."""
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if rc:
        sys.exit(f"failed ({rc}): {' '.join(cmd)}\n  see {log}")


def prepare_photos(out: Path, photos: Path | None) -> Path:
    """``photos``, or the tiny world's content folder (generated once under ``out/world``)."""
    if photos is not None:
        return photos.resolve()
    world = out / "world"
    run_logged([sys.executable, script("synth.py"), "--config", str(REPO_ROOT / "configs" / "tiny.yaml"),
                "--out", str(world), "--quiet"], out / "world.log")
    return world / "content"


def prepare_data(out: Path, photos: Path, art: Path, config: Path) -> Path:
    """The manifests and ``mine.yaml`` under ``out/data`` (once); returns the config path."""
    data = out / "data"
    mine = data / "mine.yaml"
    if not all((data / name).exists() for name in MANIFESTS):
        data.mkdir(parents=True, exist_ok=True)
        run_logged([sys.executable, script("make_manifests.py"), "--contents", str(photos),
                    "--styles", str(art / "paintings"), "--out", str(data),
                    "--label-column", LABEL], out / "manifests.log")
    text = MINE_YAML.format(config=config.resolve())
    if not mine.exists() or mine.read_text() != text:
        write_atomic(mine, text.encode())
    return mine


def run_seed(mine: Path, out: Path, seed: int, overrides: Sequence[str]) -> Path:
    """demo.py on one seed (resumes); returns its report.json."""
    run_dir = out / f"seed-{seed}"
    start = time.perf_counter()
    run_logged([sys.executable, script("demo.py"), "--config", str(mine), "--out", str(run_dir),
                f"seed={seed}", *overrides], out / f"seed-{seed}.log")
    print(f"seed {seed}: {(time.perf_counter() - start) / 60:.1f} min, log {out / f'seed-{seed}.log'}",
          flush=True)
    return run_dir / "eval" / "report.json"


def _ordered_union(lists: Sequence[Sequence[str]]) -> list[str]:
    return list(dict.fromkeys(name for names in lists for name in names))


def _pool(values: dict[int, float], queries: dict[int, int]) -> dict[str, float]:
    """Mean over seeds and the queries-weighted mean (total hits / total queries for P@1)."""
    mean = sum(values.values()) / len(values)
    total = sum(queries[s] for s in values)
    return {"mean": mean, "pooled": sum(values[s] * queries[s] for s in values) / total if total else mean}


def summarize_protocol(reports: dict[int, dict], protocol: str) -> dict[str, Any] | None:
    """Per-seed and pooled mAP, P@1 and hit@10 of every model for one protocol; None if absent."""
    tables = {s: r["meta"].get("labelled", {}).get(protocol, {}).get(LABEL) for s, r in reports.items()}
    tables = {s: t for s, t in tables.items() if t}
    if not tables:
        return None
    queries = {s: int(t["queries"]) for s, t in tables.items()}
    models = _ordered_union([[m for m in t if m not in ("queries", CHANCE)] for t in tables.values()])
    rows = {}
    for model in [*models, CHANCE]:
        rows[model] = {}
        for metric in ("map", "p@1", "hit@10"):
            per_seed = {s: t[model][metric] for s, t in tables.items() if model in t}
            if per_seed:
                rows[model][metric] = {"seeds": per_seed, **_pool(per_seed, queries)}
    return {"seeds": sorted(tables), "missing": sorted(set(reports) - set(tables)),
            "queries": queries, "models": rows}


def summarize_held_out(reports: dict[int, dict]) -> dict[str, Any]:
    """Style and content mAP of every model on each seed's held-out NST split."""
    rows: dict[str, dict] = {}
    splits = {}
    for seed, report in reports.items():
        split = report["meta"].get("held_out")
        if not split:
            continue
        splits[seed] = split
        entries = {**report["models"], CHANCE: report.get(CHANCE, {})}
        for model, by_split in entries.items():
            metrics = by_split.get(split)
            if metrics:
                row = rows.setdefault(model, {"style_map": {}, "content_map": {}})
                row["style_map"][seed] = metrics["style_map"]
                row["content_map"][seed] = metrics["content_map"]
    return {"splits": splits, "models": rows}


def collect_differences(entries: dict[int, tuple[str, dict]]) -> dict[str, Any]:
    """``{seed: (reference, {model: {metric: [difference, low, high]}})}`` (eval's 95% intervals)
    as ``{"references": {seed: reference}, "models": {model: {metric: {seed: values}}}}``."""
    rows: dict[str, dict] = {}
    for seed, (_, by_model) in entries.items():
        for model, entry in by_model.items():
            for metric, values in entry.items():
                rows.setdefault(model, {}).setdefault(metric, {})[seed] = values
    return {"references": {seed: reference for seed, (reference, _) in entries.items()}, "models": rows}


def summarize_differences(reports: dict[int, dict]) -> dict[str, Any]:
    """Per seed, the report's first model minus each other one, with eval's 95% intervals: on
    the held-out split (``held_out``) and in each labelled protocol's ``artist`` retrieval."""
    held, labelled = {}, {p: {} for p in PROTOCOLS}
    for seed, report in reports.items():
        differences = report["meta"].get("differences")
        if differences:
            held[seed] = (differences["reference"], differences["models"])
        by_protocol = report["meta"].get("labelled", {}).get("differences", {})
        for protocol in PROTOCOLS:
            if by_protocol.get(protocol, {}).get(LABEL):
                labelled[protocol][seed] = (by_protocol["reference"], by_protocol[protocol][LABEL])
    return {"held_out": collect_differences(held),
            "labelled": {p: collect_differences(e) for p, e in labelled.items() if e}}


def summarize(reports: dict[int, dict]) -> dict[str, Any]:
    """Everything the tables show, from ``{seed: report.json payload}``."""
    labelled = {p: summarize_protocol(reports, p) for p in PROTOCOLS}
    return {"seeds": sorted(reports), "labelled": {p: v for p, v in labelled.items() if v},
            "held_out": summarize_held_out(reports), "differences": summarize_differences(reports)}


def _cell(values: dict, seed: int, digits: int = 1) -> str:
    return f"{values[seed]:.{digits}f}" if seed in values else "-"


def _metric_cells(entry: dict | None, seeds: Sequence[int]) -> list[str]:
    if not entry:
        return ["-"] * (len(seeds) + 2)
    return [_cell(entry["seeds"], s) for s in seeds] + [f"{entry['mean']:.1f}", f"{entry['pooled']:.1f}"]


def protocol_table(protocol: str, summary: dict, seeds: Sequence[int]) -> str:
    """One protocol's markdown table: mAP and P@1 per seed, mean and pooled; hit@10 pooled."""
    head = ["model", *[f"mAP s{s}" for s in seeds], "mAP mean", "mAP pooled",
            *[f"P@1 s{s}" for s in seeds], "P@1 mean", "P@1 pooled", "hit@10 pooled"]
    lines = [f"### {protocol} ({LABEL}, %)", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for model, row in summary["models"].items():
        hit = row.get("hit@10")
        cells = [model if model != CHANCE else f"*{CHANCE}*", *_metric_cells(row.get("map"), seeds),
                 *_metric_cells(row.get("p@1"), seeds), f"{hit['pooled']:.1f}" if hit else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    counts = " / ".join(f"s{s} {summary['queries'].get(s, '-')}" for s in seeds)
    total = sum(summary["queries"].values())
    lines += ["", f"Queries per seed: {counts} (pooled: {total})."]
    if summary["missing"]:
        lines.append(f"Not in the report of seed(s) {', '.join(map(str, summary['missing']))}: "
                     "left out of mean and pooled.")
    return "\n".join(lines)


def held_out_table(held: dict, seeds: Sequence[int]) -> str:
    """Markdown: held-out NST style mAP and content mAP (lower better) per seed."""
    names = sorted(set(held["splits"].values())) or ["none"]
    head = ["model", *[f"style mAP s{s}" for s in seeds], *[f"content mAP s{s}" for s in seeds]]
    lines = [f"### held-out NST split ({', '.join(names)}, %; content: lower is better)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, row in held["models"].items():
        cells = [model if model != CHANCE else f"*{CHANCE}*",
                 *[_cell(row["style_map"], s) for s in seeds],
                 *[_cell(row["content_map"], s, 2) for s in seeds]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(values: list[float] | None) -> str:
    return "-" if values is None else interval_text(values)


HELD_OUT_METRICS = (("style_map", "style mAP"), ("content_map", "content mAP"))
LABELLED_METRICS = (("map", "mAP"), ("p@1", "P@1"))


def differences_table(where: str, differences: dict, seeds: Sequence[int],
                      metrics: Sequence[tuple[str, str]]) -> str:
    """Markdown: the reference minus each model, per seed and metric, with the 95% intervals of
    eval's paired bootstrap; empty without them."""
    if not differences["models"]:
        return ""
    reference = " / ".join(sorted(set(differences["references"].values())))
    head = ["model", *[f"{title} s{s}" for _, title in metrics for s in seeds]]
    lines = [f"### {where}: {reference} minus each model, points [95% interval]", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, row in differences["models"].items():
        cells = [_interval(row.get(metric, {}).get(s)) for metric, _ in metrics for s in seeds]
        lines.append("| " + " | ".join([model, *cells]) + " |")
    return "\n".join(lines)


def render(summary: dict) -> str:
    """All tables as markdown."""
    seeds = summary["seeds"]
    parts = [protocol_table(p, v, seeds) for p, v in summary["labelled"].items()]
    if not parts:
        parts.append("No labelled retrieval in the reports.")
    differences = summary["differences"]
    parts += [differences_table(f"{p} ({LABEL})", d, seeds, LABELLED_METRICS)
              for p, d in differences["labelled"].items()]
    parts += [held_out_table(summary["held_out"], seeds),
              differences_table("held-out split", differences["held_out"], seeds, HELD_OUT_METRICS)]
    return "\n\n".join(filter(None, parts)) + "\n"


def load_reports(paths: dict[int, Path]) -> dict[int, dict]:
    """``{seed: report.json payload}``."""
    return {seed: json.loads(path.read_text()) for seed, path in paths.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.art / "paintings").is_dir():
        print(f"real-art folder not found: {args.art / 'paintings'} (give --art; see the README, "
              "'On real paintings')", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    photos = prepare_photos(out, args.photos)
    mine = prepare_data(out, photos, args.art.resolve(), args.config)
    print(f"{len(args.seeds)} seed(s) of {mine}; logs: {out}/seed-<seed>.log", flush=True)
    paths = {seed: run_seed(mine, out, seed, args.overrides) for seed in args.seeds}
    summary = summarize(load_reports(paths))
    text = render(summary)
    print(text)
    write_json(out / "summary.json", summary)
    write_atomic(out / "summary.md", text.encode())
    print(f"written: {out / 'summary.json'}, {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
