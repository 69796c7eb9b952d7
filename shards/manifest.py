"""Content and style manifests, stage 1's inputs: parquet tables, one row per image.

Content: ``content_id``, ``path``, optional ``category``.
Style: ``style_id``, ``path``, optional ``group`` (the source dataset's style group: styles of
one group all go to train or all to test), optional ``tags`` (list of strings).
A relative ``path`` is resolved against the manifest's own folder (or, for a manifest at a URL,
its prefix); URLs are kept as they are. A manifest may itself be a URL (``common.storage``).
A plain manifest (``id``, ``path``) lists any images, e.g. a collection to embed.
Ids, ``path``, ``category`` and ``group`` are strings and ``tags`` a list of strings (a column
stored as numbers, or tags as one plain string, is refused naming the file, row and column).
Readers validate every row before any work starts; ``write_manifest`` writes the same schema
(the synthetic world uses it, and may add columns of its own).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from common import storage
from common.files import atomic_output
from shards.schema import ID_PATTERN

CONTENT_SCHEMA = pa.schema([("content_id", pa.string()), ("path", pa.string()),
                            ("category", pa.string())])
STYLE_SCHEMA = pa.schema([("style_id", pa.string()), ("path", pa.string()), ("group", pa.string()),
                          ("tags", pa.list_(pa.string()))])
_REQUIRED = ("path",)
ID_COLUMNS = ("content_id", "style_id", "id")   # read_image_manifest: any manifest's ids


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


def _check_row(row: dict, id_column: str, where: str, seen: dict[str, int], number: int) -> None:
    value = row[id_column]
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ManifestError(f"{where}: {id_column} {value!r} is not a valid id "
                            "(letters, digits, '_' or '-'; no dots)")
    if value in seen:
        raise ManifestError(f"{where}: duplicate {id_column} {value!r} (first at row {seen[value]})")
    seen[value] = number
    if not row["path"]:
        raise ManifestError(f"{where} ({id_column}={value}): empty path")


def _is_text(kind: pa.DataType) -> bool:
    """Strings, also as pandas may store them: large, or dictionary-encoded (a categorical)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _type_fits(kind: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_null(kind):  # a column of nulls only: the row checks name the first
        return True
    if pa.types.is_list(expected):
        return ((pa.types.is_list(kind) or pa.types.is_large_list(kind))
                and (pa.types.is_null(kind.value_type) or _is_text(kind.value_type)))
    return _is_text(kind)


def _describe(kind: pa.DataType) -> str:
    return "a list of strings" if pa.types.is_list(kind) else "strings"


def _check_types(path: str | Path, table: pa.Table, schema: pa.Schema) -> None:
    """Refuse a column stored with another type (an int path, a float NaN column, a plain
    string for tags), naming its first value: to_pylist would pass such values on silently."""
    for field in schema:
        if field.name not in table.column_names:
            continue
        column = table.column(field.name)
        if not _type_fits(column.type, field.type):
            values = column.to_pylist()
            row = next((n for n, v in enumerate(values) if v is not None), 0)
            raise ManifestError(f"{path}: row {row}: column '{field.name}' is {values[row]!r}: the "
                                f"column holds {column.type}, expected {_describe(field.type)}")


def _check_values(row: dict, schema: pa.Schema, where: str) -> None:
    """Nulls in the columns that passed ``_check_types`` (a null id fails the id check; a null
    category, group or tags takes its default)."""
    for field in schema:
        value = row.get(field.name)
        if field.name == "path" and not isinstance(value, str):
            raise ManifestError(f"{where}: column 'path' is null, expected a string")
        if pa.types.is_list(field.type) and value is not None and None in value:
            raise ManifestError(f"{where}: column '{field.name}' is {value!r}: a null in the list")


def _resolve(file: Path, where: str) -> Path:
    """``file`` made absolute, its links followed; a link that leads back to itself is named
    (pathlib raises a RuntimeError or, on newer Pythons, an OSError without the row)."""
    try:
        return file.resolve()
    except RuntimeError:   # Python < 3.13: "Symlink loop from ..."
        raise ManifestError(f"{where}: symlink loop: {file}") from None
    except OSError as exc:
        problem = "symlink loop" if exc.errno == errno.ELOOP else f"cannot resolve the path ({exc})"
        raise ManifestError(f"{where}: {problem}: {file}") from None


def _read_manifest(path: str | Path, read: Callable[[Any], Any]) -> Any:
    """``read`` (pyarrow's ``read_table`` or ``read_schema``) of a manifest, local or at a
    URL; a missing one is named."""
    if not storage.is_file(path):
        raise ManifestError(f"manifest not found: {path}")
    if not storage.is_url(path):
        return read(path)
    with storage.open_input(path) as handle:
        return read(handle)


def _locate(path: str | Path, row: dict, where: str, check_files: bool) -> str:
    """A row's image: a URL as it is; a relative path against the manifest's folder or prefix
    (a URL then, not checked: one request per row); a local file resolved and checked."""
    if _is_url(row["path"]):
        return row["path"]
    if storage.is_url(path):
        return storage.join(storage.parent(path), row["path"])
    resolved = _resolve(Path(path).parent / row["path"], where)
    if check_files and not resolved.is_file():
        raise ManifestError(f"{where}: file not found: {resolved}")
    return str(resolved)


def _read_rows(path: str | Path, schema: pa.Schema, check_files: bool) -> list[dict]:
    table = _read_manifest(path, pq.read_table)
    id_column = schema.names[0]
    missing = [c for c in (id_column, *_REQUIRED) if c not in table.column_names]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; has {table.column_names}")
    if not table.num_rows:
        raise ManifestError(f"{path}: manifest has no rows")
    _check_types(path, table, schema)
    rows = table.to_pylist()
    seen: dict[str, int] = {}
    for number, row in enumerate(rows):
        where = f"{path}: row {number}"
        _check_values(row, schema, where)
        _check_row(row, id_column, where, seen, number)
        row["path"] = _locate(path, row, f"{where} ({id_column}={row[id_column]})", check_files)
    return rows


def read_content_manifest(path: str | Path, check_files: bool = True) -> list[ContentRow]:
    rows = _read_rows(storage.path_or_url(path), CONTENT_SCHEMA, check_files)
    return [ContentRow(r["content_id"], r["path"], r.get("category") or "") for r in rows]


def read_style_manifest(path: str | Path, check_files: bool = True) -> list[StyleRow]:
    rows = _read_rows(storage.path_or_url(path), STYLE_SCHEMA, check_files)
    return [StyleRow(r["style_id"], r["path"], r.get("group") or r["style_id"],
                     tuple(r.get("tags") or ())) for r in rows]


def read_image_manifest(path: str | Path, check_files: bool = True) -> list[tuple[str, str]]:
    """(id, path) rows of a content or style manifest, or of a plain one with ``id, path``:
    the id is the first of ``content_id``, ``style_id``, ``id`` the file has. Validated as
    the others (so ids have no dots and every file exists)."""
    path = storage.path_or_url(path)
    columns = _read_manifest(path, pq.read_schema).names
    id_column = next((c for c in ID_COLUMNS if c in columns), ID_COLUMNS[-1])
    rows = _read_rows(path, pa.schema([(id_column, pa.string()), ("path", pa.string())]), check_files)
    return [(row[id_column], row["path"]) for row in rows]


def write_manifest(rows: list[dict], schema: pa.Schema, path: str | Path,
                   extra: pa.Schema | None = None) -> None:
    """Write ``rows`` as a manifest of ``schema`` (plus ``extra`` columns), atomically."""
    full = pa.schema(list(schema) + list(extra or []))
    with atomic_output(path) as fh:
        pq.write_table(pa.Table.from_pylist(rows, schema=full), fh)
