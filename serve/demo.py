"""Everything the page needs for the demo's held-out images, made from `make demo`'s outputs.

The held-out method's test split (stylizations a method no model trained on) is written out as
JPEG files (the bytes stored in the shards, not re-encoded) with a label table (style, group,
tags, content category, method), then embedded with the demo's NST checkpoint and with a
baseline, and indexed: the user commands ``pipeline/embed.py`` and ``pipeline/search.py build``,
run as a user would, each skipped when its output is already complete.

    <demo>/serve/images/<key>.<member>   e.g. ss-faces-05-1.x1.jpg, as `tar -x` names them
    <demo>/serve/labels.csv              path, style, group, tags, content, method
    <demo>/serve/emb-<model>/index/      embeddings and index of each model
"""
from __future__ import annotations

import json
from collections import Counter
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common.config import REPO_ROOT, RESOLVED_NAME
from common.files import write_atomic, write_csv
from shards.reader import complete_shards, raw_samples, split_roles
from shards.schema import META_MEMBER
from stylecode.identity import StyleCodeError
from stylecode.index import META_FILE
from stylecode.store import list_files

LABELS = "labels.csv"


@dataclass
class DemoServe:
    """What ``pipeline/serve.py --demo`` serves."""

    indexes: list[Path]
    heads: list[Path]
    labels: Path


def extract_held_out(shards: Path, out: Path) -> Path:
    """Write the held-out split's stylizations and their label table; returns the table
    (written last: its presence marks the extraction complete)."""
    table = out / LABELS
    if table.is_file():
        return table
    held_out = split_roles(shards).held_out
    if held_out is None:
        raise StyleCodeError(f"{shards}: no held-out test split (run `make demo` first)")
    rows = []
    for sample in raw_samples(complete_shards(shards / held_out)):
        meta = json.loads(sample[META_MEMBER])
        for item in meta["items"]:
            name = f"{sample['__key__']}.{item['member']}"
            write_atomic(out / "images" / name, sample[item["member"]])
            rows.append({"path": f"images/{name}", "style": meta["style_id"],
                         "group": meta.get("group") or "", "tags": "|".join(meta.get("tags") or []),
                         "content": item.get("category") or "", "method": item.get("method") or ""})
    if not rows:
        raise StyleCodeError(f"{shards / held_out}: no complete shard to serve")
    # A label table's column must share a label between two images (evaluation.labelled).
    columns = ["path"] + [name for name in rows[0] if name != "path" and
                          max(Counter(row[name] for row in rows if row[name]).values(), default=0) > 1]
    write_csv(table, columns, [[row[name] for name in columns] for row in rows])
    return table


def _run(step: str, command: list[str]) -> None:
    print(f"\n=== {step}: {' '.join(command)}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise StyleCodeError(f"{step} failed (its output is above)")


def _index_is_current(embeddings: Path) -> bool:
    meta = embeddings / "index" / META_FILE
    files = list_files(embeddings)
    return meta.is_file() and bool(files) and all(f.stat().st_mtime <= meta.stat().st_mtime for f in files)


def embed_and_index(images: Path, model: list[str], out: Path, config: Path) -> Path:
    """``pipeline/embed.py`` then ``pipeline/search.py build``, each only when needed."""
    python = sys.executable
    _run(f"embed {out.name}", [python, str(REPO_ROOT / "pipeline/embed.py"), "--config", str(config),
                               "--input", str(images), *model, "--out", str(out)])
    if not _index_is_current(out):
        _run(f"index {out.name}", [python, str(REPO_ROOT / "pipeline/search.py"), "build",
                                   "--config", str(config), "--embeddings", str(out)])
    return out / "index"


def prepare_demo(demo: Path, model: str = "nst", baseline: str = "vgg_moments") -> DemoServe:
    """The demo's held-out images, embedded by the trained ``model`` and by ``baseline``
    (with the evaluation's config, so its tagging heads fit), indexed."""
    demo = demo.resolve()
    checkpoint = demo / "runs" / model / "checkpoints" / "last.pt"
    evaluation = demo / "eval"
    config = evaluation / RESOLVED_NAME
    for needed in (checkpoint, config):
        if not needed.is_file():
            raise StyleCodeError(f"{needed} not found: run `make demo` (or pipeline/demo.py "
                                 f"--out {demo}) first")
    out = demo / "serve"
    labels = extract_held_out(demo / "shards", out)
    indexes = [embed_and_index(out / "images", ["--checkpoint", f"{model}={checkpoint}"],
                               out / f"emb-{model}", config),
               embed_and_index(out / "images", ["--baseline", baseline], out / f"emb-{baseline}", config)]
    heads = [path for path in (evaluation / "heads" / f"{name}.pt" for name in (model, baseline))
             if path.is_file()]
    return DemoServe(indexes, heads, labels)
