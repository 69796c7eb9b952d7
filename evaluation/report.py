"""Writes the evaluation outputs: report.json, report.md and the pictures.

Results are nested as ``{model: {split: {metric: value in %}}}``; a value that cannot be
computed (e.g. no query shares its content with another image) is nan here, null in JSON and
"–" in Markdown.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: evaluation runs on headless machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from evaluation.bootstrap import interval_text, settled  # noqa: E402
from models.baselines import list_baselines  # noqa: E402
from evaluation.scoring import CHANCE_SUFFIX, CROPS, TEST, metrics_for  # noqa: E402
from evaluation.tagging_eval import COLUMNS as TAG_COLUMNS, TaggingResult  # noqa: E402
from shards.reader import SplitRoles  # noqa: E402

Results = dict[str, dict[str, dict[str, float]]]
CHANCE_ROW = "*chance*"


def _finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def train_average(results: Results, model: str, roles: SplitRoles, metric: str) -> float:
    values = [results[model][s].get(metric, float("nan")) for s in roles.tests if s in results[model]]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def chance_levels(results: Results) -> dict[str, dict[str, float]]:
    """{split: {metric: chance}}: a random order's score, from the first model scoring a split
    (chance depends on the split's labels only)."""
    levels: dict[str, dict[str, float]] = {}
    for splits in results.values():
        for split, scores in splits.items():
            levels.setdefault(split, {k[: -len(CHANCE_SUFFIX)]: v for k, v in scores.items()
                                      if k.endswith(CHANCE_SUFFIX)})
    return levels


def with_chance_row(results: Results, label: str = CHANCE_ROW) -> Results:
    """``results`` plus one more row, ``label``, holding each split's chance levels."""
    return {**results, label: chance_levels(results)}


def write_json(results: Results, meta: dict, path: Path, tagging: TaggingResult | None = None) -> None:
    models = {model: {split: {k: _finite_or_none(v) for k, v in metrics.items()
                              if not k.endswith(CHANCE_SUFFIX)}
                      for split, metrics in splits.items()}
              for model, splits in results.items()}
    chance = {split: {k: _finite_or_none(v) for k, v in metrics.items()}
              for split, metrics in chance_levels(results).items()}
    payload = {"models": models, "chance": chance, "meta": meta}
    if tagging is not None:
        payload["tagging"] = {"models": {model: {k: _finite_or_none(v) for k, v in metrics.items()}
                                         for model, metrics in tagging.metrics.items()},
                              "meta": tagging.meta}
    path.write_text(json.dumps(payload, indent=2))


def _cell(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def _table(rows: Results, metric: str, roles: SplitRoles) -> list[str]:
    """Models (and the chance row) as rows, splits as columns; the training-method average and
    the held-out split stand apart at the right."""
    columns = roles.tests
    header = ["model"] + columns
    if roles.tests:
        header.append("**avg (train methods)**")
    if roles.held_out:
        header.append(f"**{roles.held_out} (held out)**")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, splits in rows.items():
        cells = [_cell(splits.get(c, {}).get(metric, float("nan"))) for c in columns]
        if roles.tests:
            cells.append(_cell(train_average(rows, model, roles, metric)))
        if roles.held_out:
            cells.append(_cell(splits.get(roles.held_out, {}).get(metric, float("nan"))))
        lines.append("| " + " | ".join([model] + cells) + " |")
    return lines


def own_code_note(model: str, splits: Sequence[str]) -> str:
    """The note for a model that sees the code which conditioned the NST network of ``splits``:
    a baseline computes that code, a trained encoder (its style-net branch) takes it as input."""
    where = ", ".join(f"`{s}`" for s in splits)
    if model in list_baselines():
        return (f"Note: `{model}` computes the code that conditioned the network which stylized "
                f"{where}: there it scores its own conditioning code, not an independent view of "
                "style.")
    return (f"Note: `{model}` takes as input (its style-net branch) the code that conditioned the "
            f"network which stylized {where}: there it is given the very code the images were "
            "made from, not an independent view of style.")


def markdown_report(results: Results, roles: SplitRoles, meta: dict) -> str:
    lines = ["# Style retrieval evaluation", "",
             f"Shards: `{meta['shards']}`. Held-out NST method: `{meta['held_out']}`. "
             "Values in %. Style metrics: higher is better. Content metrics: lower is better "
             "(a style code should not find images of the same content). The *chance* row is "
             "what a random order scores on the same split (it depends on the split's sizes: "
             "compare each model with it, not with zero).", ""]
    for model, splits in meta.get("own_code_splits", {}).items():
        lines += [own_code_note(model, splits), ""]
    rows = with_chance_row(results)
    for metric in metrics_for(TEST):
        better = "lower is better" if metric.lower_is_better else "higher is better"
        lines += [f"## {metric.title} ({better})", ""]
        lines += _table(rows, metric.name, roles) + [""]
    crops = roles.crops
    if crops and any(crops in splits for splits in results.values()):
        crop_metrics = metrics_for(CROPS)
        source = ("the synthetic world's style images" if meta.get("synthetic_styles")
                  else "the style manifest's images, unstylized")
        lines += [f"## Crops of {source} (higher is better)", "",
                  "Each crop queries all other crops; relevant = crops of the same image.", ""]
        lines += ["| model | " + " | ".join(m.title for m in crop_metrics) + " |",
                  "|" + "---|" * (1 + len(crop_metrics))]
        for model, splits in rows.items():
            if crops in splits:
                cells = [_cell(splits[crops].get(m.name, float("nan"))) for m in crop_metrics]
                lines.append("| " + " | ".join([model] + cells) + " |")
        lines.append("")
    lines += differences_markdown(meta.get("differences"))
    return "\n".join(lines)


def _signed(entry: list[float] | None) -> str:
    """The difference and its interval, in bold where the interval leaves out 0; "–" for none."""
    if entry is None:
        return "–"
    return f"**{interval_text(entry)}**" if settled(entry) else interval_text(entry)


def differences_markdown(differences: dict | None) -> list[str]:
    """The section on how sure the held-out split's differences are (evaluation/bootstrap.py)."""
    if not differences or not differences["models"]:
        return []
    ref, split = differences["reference"], differences["split"]
    lines = [f"## Differences on `{split}`, with 95% intervals", "",
             f"`{ref}` minus each model, in points of mAP, and in brackets the 95% interval of a "
             "paired bootstrap over the split's style groups and contents "
             f"({differences['resamples']} resamples; evaluation/bootstrap.py). Style mAP: above 0 favours "
             f"`{ref}`; content mAP: below 0 favours `{ref}`. In bold: the interval leaves out 0. "
             "An interval that holds 0: this split does not tell the two models apart.", "",
             f"| model | style mAP: {ref} minus model | content mAP: {ref} minus model |",
             "|---|---|---|"]
    for model, entry in differences["models"].items():
        cells = [_signed(entry.get(metric)) for metric in ("style_map", "content_map")]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines + [""]


def tagging_markdown(tagging: TaggingResult) -> list[str]:
    """The "Zero-shot style tagging" section: one row per model, chance levels in the last."""
    meta = tagging.meta
    zero_shot = ", ".join(f"`{tag}` ({n})" for tag, n in meta["zero_shot_tags"].items()) or "none"
    lines = ["## Zero-shot style tagging (higher is better)", "",
             f"A head per model maps its frozen codes of {meta['train_styles']} training styles "
             f"into the text space of `{meta['text_encoder']}`; each of the {meta['test_styles']} "
             f"held-out test styles then ranks a vocabulary of {meta['vocabulary']} tags. "
             f"Zero-shot tags, never used in training (test styles carrying each): {zero_shot}; "
             f"the zero-shot columns score the tags unseen in training ({meta['unseen_tags']}). "
             "Recall@k: the share of an image's tags within its top k. Values in %.", ""]
    header = ["model", *TAG_COLUMNS.values()]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, metrics in tagging.metrics.items():
        cells = [_cell(metrics.get(key, float("nan"))) for key in TAG_COLUMNS]
        lines.append("| " + " | ".join([model] + cells) + " |")
    chance = next(iter(tagging.metrics.values()), {})
    cells = [_cell(chance.get(f"{key}_chance", float("nan"))) for key in TAG_COLUMNS]
    lines += ["| " + " | ".join(["*chance*"] + cells) + " |", ""]
    return lines


def plot_tagging(tagging: TaggingResult, path: Path) -> None:
    """Test styles (rows) with each pictured model's top predicted tags; green = a true tag."""
    models = list(tagging.examples[0][2]) if tagging.examples else []
    fig, axes = plt.subplots(len(tagging.examples), 1 + len(models), squeeze=False,
                             figsize=(1.9 + 2.3 * len(models), 1.9 * len(tagging.examples) + 0.4))
    for row, (image, truth, tops) in zip(axes, tagging.examples):
        row[0].imshow(image)
        row[0].set_xticks([])
        row[0].set_yticks([])
        for ax, model in zip(row[1:], models):
            ax.axis("off")
            for line, tag in enumerate(tops[model]):
                hit = tag in truth
                ax.text(0.0, 0.9 - 0.19 * line, ("✓ " if hit else "   ") + tag, fontsize=8,
                        color="green" if hit else "dimgray", weight="bold" if hit else "normal",
                        transform=ax.transAxes, va="top")
    for ax, model in zip(axes[0][1:], models):
        ax.set_title(model, fontsize=9)
    fig.suptitle("Top-5 predicted tags of held-out test styles (green ✓ = a true tag)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_style_vs_content(results: Results, splits: Sequence[str], held_out: str | None,
                          path: Path) -> None:
    """One panel per test split, two panels a row: style mAP next to content mAP per model."""
    models = list(results)
    columns = min(2, len(splits))
    rows = -(-len(splits) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.0 + 0.7 * len(models) * columns, 0.6 + 3.4 * rows),
                             squeeze=False, sharey=True)
    for ax in axes.flat[len(splits):]:
        ax.axis("off")
    x = np.arange(len(models))
    for ax, split in zip(axes.flat, splits):
        style = [results[m][split]["style_map"] for m in models]
        content = [results[m][split]["content_map"] for m in models]
        ax.bar(x - 0.2, np.nan_to_num(style), 0.4, label="style mAP (higher better)", color="tab:blue")
        ax.bar(x + 0.2, np.nan_to_num(content), 0.4, label="content mAP (lower better)", color="tab:orange")
        ax.set_title(f"{split} (held out)" if split == held_out else split, fontsize=10)
        ax.set_xticks(x, models, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel("mAP (%)")
    axes[0][0].set_ylim(0, 100)
    # Above the panels: inside one, the legend would hide bars near 100 %.
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_retrieval_grid(rows: list[tuple[Image.Image, list[tuple[Image.Image, bool]]]],
                        title: str, path: Path) -> None:
    """Queries (first column) and their nearest neighbours; green border = same style."""
    columns = 1 + max(len(neighbours) for _, neighbours in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.6 * len(rows) + 0.5),
                             squeeze=False)
    for row, (query, neighbours) in enumerate(rows):
        cells = [(query, None)] + neighbours
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(cells):
                ax.axis("off")
                continue
            image, correct = cells[col]
            ax.imshow(image)
            colour = "black" if correct is None else ("limegreen" if correct else "red")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(1.5 if correct is None else 5)
            if row == 0:
                ax.set_title("query" if col == 0 else f"#{col}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- report.html: the same report as a page, with its pictures -----------------------------------

HTML_NAME = "report.html"
# The pictures an evaluation writes, in the order the page shows them, with what each shows.
PICTURES = {
    "style_vs_content.png": "Style mAP (higher is better) next to content mAP (lower is better), per split",
    "retrieval_grid.png": "Queries of the held-out split and their nearest neighbours "
                          "(green = same style, red = other style)",
    "tagging.png": "Top-5 predicted tags of held-out test styles",
    "labelled_grid.png": "Labelled retrieval: queries and their nearest neighbours",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
          "color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:14px}"
          "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
          "th:first-child,td:first-child{text-align:left}figure{margin:1em 0}"
          "img{max-width:100%}figcaption{color:#555;font-size:14px}code{background:#f3f3f3}")


def _markdown_to_html(text: str) -> str:
    """Markdown (with tables) to HTML; raw HTML in the text is shown as text, not run (model
    and split names come from the user)."""
    import markdown
    converter = markdown.Markdown(extensions=["tables"])
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    return converter.convert(text)


def html_report(markdown_text: str, pictures: Sequence[str]) -> str:
    """A standalone page: the Markdown report, then ``pictures`` (file names in the report's
    folder, linked relatively so the page opens from disk, or wherever the folder is copied)."""
    from html import escape
    figures = [f'<figure><img src="{escape(name)}" alt="{escape(name)}"><figcaption>'
               f'{escape(PICTURES.get(name, name))} (<code>{escape(name)}</code>)</figcaption></figure>'
               for name in pictures]
    body = _markdown_to_html(markdown_text) + ("\n<h2>Pictures</h2>\n" + "\n".join(figures) if figures else "")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Style retrieval evaluation</title><style>{_STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def write_html_report(folder: Path) -> Path:
    """``report.html`` beside ``report.md``, with the pictures the folder holds."""
    pictures = [name for name in PICTURES if (folder / name).is_file()]
    path = folder / HTML_NAME
    path.write_text(html_report((folder / "report.md").read_text(), pictures), encoding="utf-8")
    return path
