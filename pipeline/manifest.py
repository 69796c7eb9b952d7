"""Content and style manifests: parquet tables, one row per image, validated before any work.

Content: ``content_id``, ``path``, optional ``category``.
Style: ``style_id``, ``path``, optional ``group``, optional ``tags`` (list of strings).
A relative ``path`` is resolved against the manifest's own folder; URLs are kept as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from shards.schema import ID_PATTERN

CONTENT_COLUMNS = {"required": ("content_id", "path"), "optional": ("category",)}
STYLE_COLUMNS = {"required": ("style_id", "path"), "optional": ("group", "tags")}


class ManifestError(ValueError):
    """A manifest problem; the message names the file and the row."""


@dataclass(frozen=True)
class ContentRow:
    content_id: str
    path: str
    category: str


@dataclass(frozen=True)
class StyleRow:
    style_id: str
    path: str
    group: str
    tags: tuple[str, ...]


def _is_url(path: str) -> bool:
    return "://" in path


def _read_rows(path: Path, columns: dict, id_column: str, check_files: bool) -> list[dict]:
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    table = pq.read_table(path)
    missing = [c for c in columns["required"] if c not in table.column_names]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; has {table.column_names}")
    rows = table.to_pylist()
    if not rows:
        raise ManifestError(f"{path}: manifest has no rows")
    seen: dict[str, int] = {}
    for number, row in enumerate(rows):
        where = f"{path}: row {number}"
        value = row[id_column]
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            raise ManifestError(f"{where}: {id_column} {value!r} is not a valid id "
                                "(letters, digits, '_' or '-'; no dots)")
        if value in seen:
            raise ManifestError(f"{where}: duplicate {id_column} {value!r} (first at row {seen[value]})")
        seen[value] = number
        if not row["path"]:
            raise ManifestError(f"{where} ({id_column}={value}): empty path")
        if not _is_url(row["path"]):
            resolved = (path.parent / row["path"]).resolve()
            if check_files and not resolved.is_file():
                raise ManifestError(f"{where} ({id_column}={value}): file not found: {resolved}")
            row["path"] = str(resolved)
    return rows


def read_content_manifest(path: str | Path, check_files: bool = True) -> list[ContentRow]:
    rows = _read_rows(Path(path), CONTENT_COLUMNS, "content_id", check_files)
    return [ContentRow(r["content_id"], r["path"], r.get("category") or "") for r in rows]


def read_style_manifest(path: str | Path, check_files: bool = True) -> list[StyleRow]:
    rows = _read_rows(Path(path), STYLE_COLUMNS, "style_id", check_files)
    return [StyleRow(r["style_id"], r["path"], r.get("group") or r["style_id"],
                     tuple(r.get("tags") or ())) for r in rows]
