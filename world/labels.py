"""The synthetic world as a labelled collection: its style images by technique, palette and
subject, for the labelled-retrieval protocol (``evaluation.labelled``).

Only the images of style groups that stage 1 did not train on are listed: a trained encoder has
seen every image of its train groups. Technique and palette are style (a style code should find
an image's technique-mates), subject is content (it should not find its subject-mates).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable

from common.files import write_csv
from world.generate import MARKER, STYLE_MANIFEST

COLUMNS = ("technique", "palette", "subject")
TABLE_NAME = "world.csv"
# What the report says under each column: which way is better for a style code.
NOTES = {"technique": "Style: higher is better.", "palette": "Style: higher is better.",
         "subject": "Content: lower is better (a style code should not find an image's subject-mates)."}


def world_groups(world_root: str | Path) -> set[str]:
    """The style groups of the world at ``world_root``."""
    return set(json.loads((Path(world_root) / MARKER).read_text())["groups"])


def world_label_rows(world_root: str | Path, exclude_groups: Iterable[str]) -> list[dict[str, str]]:
    """id, absolute path, technique, palette and subject of each style image of the world at
    ``world_root`` outside ``exclude_groups``, in manifest order."""
    import pyarrow.parquet as pq
    root = Path(world_root).resolve()
    groups = json.loads((root / MARKER).read_text())["groups"]
    excluded = set(exclude_groups)
    rows = []
    for style in pq.read_table(root / STYLE_MANIFEST).to_pylist():
        if style["group"] in excluded:
            continue
        number = int(style["style_id"].rsplit("-", 1)[1])   # the image's place in its group
        params = groups[style["group"]]["images"][number]
        rows.append({"id": style["style_id"], "path": str(root / style["path"]),
                     "technique": params["technique"], "palette": params["palette"],
                     "subject": groups[style["group"]]["category"]})
    return rows


def write_world_labels(world_root: str | Path, exclude_groups: Iterable[str],
                       path: str | Path) -> list[str]:
    """Write :func:`world_label_rows` as a CSV table (``eval.labelled.table``'s layout); returns
    the columns that have a query (a label on two or more images): a small world may have none."""
    rows = world_label_rows(world_root, exclude_groups)
    header = ["id", "path", *COLUMNS]
    write_csv(path, header, [[row[key] for key in header] for row in rows])
    return [column for column in COLUMNS
            if max(Counter(row[column] for row in rows).values(), default=0) > 1]
