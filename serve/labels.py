"""What the page shows under each image and colours the map by: labels per item id.

From a label table (``evaluation.labelled``'s format: a CSV or parquet with a ``path`` column,
an optional ``id`` and label columns; several labels in a cell separated by ``|``), matched to
the collection by file path, else by id. Without a table, an item whose id has a folder is
labelled by that first folder (``group``), as ``pipeline/make_manifests.py`` groups styles.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from evaluation.labelled import LabelTableError, read_label_table
from stylecode.identity import StyleCodeError

GROUP = "group"


@dataclass
class Labels:
    """``values[id][column]``: the sorted labels of an item; ``colour_by``: the map's column."""

    columns: list[str]
    values: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    colour_by: str | None = None

    def of(self, item_id: str) -> dict[str, list[str]]:
        return self.values.get(item_id, {})

    def colour(self, item_id: str) -> str:
        """The label the map colours an item by ('' when it has none)."""
        found = self.of(item_id).get(self.colour_by or "", [])
        return found[0] if found else ""


def _normal(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def from_table(table_path: str | Path, ids: Sequence[str], paths: Sequence[str]) -> Labels:
    try:
        table = read_label_table(table_path)
    except LabelTableError as exc:
        raise StyleCodeError(str(exc)) from None
    by_path = {_normal(p): row for row, p in enumerate(table.paths)}
    by_id = {item_id: row for row, item_id in enumerate(table.ids)}
    labels = Labels(list(table.columns))
    for item_id, path in zip(ids, paths):
        row = by_path.get(_normal(path), by_id.get(item_id))
        if row is not None:
            labels.values[item_id] = {name: sorted(column[row]) for name, column in table.columns.items()}
    if not labels.values:
        raise StyleCodeError(f"{table_path}: no row names an image of the collection (by path or id)")
    return labels


def from_folders(ids: Sequence[str]) -> Labels:
    values = {item_id: {GROUP: [item_id.split("/", 1)[0]]} for item_id in ids if "/" in item_id}
    return Labels([GROUP] if values else [], values)


def load_labels(table: str | Path | None, ids: Sequence[str], paths: Sequence[str],
                colour_by: str | None = None) -> Labels:
    """The collection's labels; ``colour_by`` (default: ``group`` if present, else the first
    column) must be one of their columns."""
    labels = from_table(table, ids, paths) if table else from_folders(ids)
    if colour_by is not None and colour_by not in labels.columns:
        raise StyleCodeError(f"--colour-by {colour_by!r}: not a label column "
                             f"(columns: {labels.columns or 'none'})")
    labels.colour_by = colour_by or (GROUP if GROUP in labels.columns else
                                     (labels.columns[0] if labels.columns else None))
    return labels
