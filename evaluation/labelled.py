"""Retrieval on a labelled collection of real images: the yardstick the field reports (CSD's
WikiArt artist retrieval, ALADIN's BAM-FG IR-1, StyleDecoupler's WeART mAP@1), next to the
synthetic NST splits of ``evaluation/metrics.py``. docs/labelled.md says what each number means.

Three parts: the label table (a CSV or parquet of image paths and one or more label columns),
the metrics over style codes (exact, in chunks of queries, each with its exact chance level),
and the query/database split with its file, plus a Markdown section for the report.

Relevance is multi-label: a gallery item is relevant to a query when the two share a label. A
query is never its own gallery item. Ties are pessimistic, as in ``evaluation/metrics.py``:
full AP gives each relevant item the precision of everything scoring at least as high as it
(scikit-learn's ``average_precision_score``); the cutoff metrics rank, within a group of equal
scores, every irrelevant item above every relevant one.
"""
from __future__ import annotations

import csv
import functools
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from common.files import write_csv
from evaluation.bootstrap import interval_text, paired_difference
from evaluation.metrics import _count_at_least

ID_COLUMN = "id"
# How queries and gallery are chosen; each but "loo" takes them as split=(queries, gallery).
PROTOCOLS = {
    "loo": "leave-one-out: every labelled image queries all the others",
    "split": "query/database split: each query image against the database images",
    "unseen": "the images the encoders did not train on (style groups stage 1 held out) "
              "query the whole collection",
    "seen": "the images the encoders trained on (stage 1's train split) query the whole "
            "collection",
}
ROLES = ("query", "database")
_LISTED = 5   # bad rows quoted in one error message; the rest are counted
# Relevant items per query up to which counting beats sorting each row (measured: at about 200
# relevant items the byte counting costs one sort of the row, whatever the gallery size).
_COMPARE_WIDTH = 128


class LabelTableError(ValueError):
    """A label table or split file that cannot be used: the message names the file, and the
    (1-based data) row and the column where one is at fault."""


@dataclass
class LabelTable:
    """One labelled image collection: row i is ``paths[i]``, known as ``ids[i]``, with the label
    set ``columns[name][i]`` in each label column (empty: unlabelled there, a distractor)."""

    source: Path
    paths: list[str]
    ids: list[str]
    columns: dict[str, list[frozenset[str]]]

    def __len__(self) -> int:
        return len(self.paths)


# --- the label table -------------------------------------------------------------------------

def _where(source: Path, row: int | None = None, column: str | None = None) -> str:
    parts = [str(source)] + ([f"row {row}"] if row is not None else [])
    return ", ".join(parts + ([f"column {column!r}"] if column is not None else []))


def _read_csv(source: Path) -> tuple[list[str], list[dict[str, Any]]]:
    # utf-8-sig: spreadsheets write a byte-order mark that would otherwise join the first name.
    with open(source, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        if repeated:
            raise LabelTableError(f"{source}: column names repeated in the header: {repeated}")
        rows = []
        for number, row in enumerate(reader, start=1):
            if None in row:
                raise LabelTableError(f"{_where(source, number)}: more cells than the header has columns")
            # A CSV has no null: an empty cell is how it says "no label here".
            rows.append({name: (None if value == "" else value) for name, value in row.items()})
    return columns, rows


def _read_rows(source: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names and rows (dicts) of a CSV or parquet table."""
    if not source.is_file():
        raise LabelTableError(f"{source}: no such label table")
    suffix = source.suffix.lower()
    if suffix == ".csv":
        return _read_csv(source)
    if suffix == ".parquet":
        try:
            table = pq.read_table(source)
        except (pa.ArrowException, OSError) as error:
            raise LabelTableError(f"{source}: not a readable parquet file ({error})") from error
        return table.column_names, table.to_pylist()
    raise LabelTableError(f"{source}: a label table is a .csv or .parquet file, "
                          f"not {suffix or 'a file without a suffix'}")


def _one_label(item: Any, where: str) -> str:
    text = "" if item is None else str(item).strip()
    if not text:
        raise LabelTableError(f"{where}: an empty label (leave the whole cell empty for none)")
    return text


def _label_set(cell: Any, separator: str, where: str) -> frozenset[str]:
    """A cell's labels: a null, NaN or empty list is none; a string holds ``separator``-separated
    labels; a list (parquet) one label per item; any other value is one label, its text."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return frozenset()
    if isinstance(cell, str):
        items = cell.split(separator)
    elif isinstance(cell, (list, tuple)):
        items = list(cell)
    else:
        items = [cell]
    return frozenset(_one_label(item, where) for item in items)


def _label_columns(source: Path, found: list[str], wanted: Sequence[str] | None,
                   path_column: str) -> list[str]:
    if path_column not in found:
        raise LabelTableError(f"{source}: no path column {path_column!r} (columns found: {found})")
    if wanted is None:
        wanted = [name for name in found if name not in (path_column, ID_COLUMN)]
        if not wanted:
            raise LabelTableError(f"{source}: no label column (columns found: {found})")
    for name in wanted:
        if name in (path_column, ID_COLUMN):
            raise LabelTableError(f"{_where(source, column=name)}: holds paths or ids, not labels")
        if name not in found:
            raise LabelTableError(f"{source}: no label column {name!r} (columns found: {found})")
    return list(wanted)


def _resolved_paths(source: Path, rows: list[dict[str, Any]], path_column: str) -> list[str]:
    """Each row's image path, relative ones read from the table's folder; duplicates are an error."""
    paths, first_row = [], {}
    for number, row in enumerate(rows, start=1):
        text = "" if row[path_column] is None else str(row[path_column]).strip()
        if not text:
            raise LabelTableError(f"{_where(source, number, path_column)}: no image path")
        path = os.path.normpath(source.parent / text)   # an absolute path is kept as it is
        if path in first_row:
            raise LabelTableError(f"{source}: rows {first_row[path]} and {number} "
                                  f"both name the image {path}")
        first_row[path] = number
        paths.append(path)
    return paths


def _check_files_exist(source: Path, paths: list[str]) -> None:
    """Every image must exist: all rows are checked so one message lists the damage."""
    missing = [(number, path) for number, path in enumerate(paths, start=1) if not os.path.isfile(path)]
    if missing:
        listed = "; ".join(f"row {number}: {path}" for number, path in missing[:_LISTED])
        raise LabelTableError(f"{source}: {len(missing)} of {len(paths)} images do not exist "
                              f"({listed}{'; ...' if len(missing) > _LISTED else ''})")


def _row_ids(source: Path, rows: list[dict[str, Any]], paths: list[str], has_id: bool) -> list[str]:
    """The ``id`` column when there is one, else each path relative to the table's folder."""
    if not has_id:
        return [Path(os.path.relpath(path, source.parent)).as_posix() for path in paths]
    ids, first_row = [], {}
    for number, row in enumerate(rows, start=1):
        text = "" if row[ID_COLUMN] is None else str(row[ID_COLUMN]).strip()
        if not text:
            raise LabelTableError(f"{_where(source, number, ID_COLUMN)}: no id")
        if text in first_row:
            raise LabelTableError(f"{source}: rows {first_row[text]} and {number} share the id {text!r}")
        first_row[text] = number
        ids.append(text)
    return ids


def _check_queryable(source: Path, column: str, labels: list[frozenset[str]]) -> None:
    counts = Counter(label for row in labels for label in row)
    if not counts or max(counts.values()) < 2:
        raise LabelTableError(f"{_where(source, column=column)}: no label has two or more images, "
                              "so no image can be queried")


def read_label_table(path: str | Path, label_columns: Sequence[str] | None = None,
                     path_column: str = "path", separator: str = "|") -> LabelTable:
    """Read a CSV or parquet label table (chosen by suffix).

    Each row names an image (relative paths are read from the table's folder) and, in each label
    column, zero, one or several labels: parquet list cells, or strings split on ``separator``,
    whitespace stripped. A null, NaN, empty list or empty CSV cell leaves the row unlabelled in
    that column (a distractor); an empty label inside a cell is an error. ``label_columns=None``
    takes every column but the path column and an optional ``id`` column. Every problem is a
    LabelTableError naming the file, and the row and column at fault.
    """
    source = Path(path).absolute()
    found, rows = _read_rows(source)
    wanted = _label_columns(source, found, label_columns, path_column)
    paths = _resolved_paths(source, rows, path_column)
    ids = _row_ids(source, rows, paths, ID_COLUMN in found)
    columns = {name: [_label_set(row[name], separator, _where(source, number, name))
                      for number, row in enumerate(rows, start=1)] for name in wanted}
    _check_files_exist(source, paths)
    for name, labels in columns.items():
        _check_queryable(source, name, labels)
    return LabelTable(source=source, paths=paths, ids=ids, columns=columns)


# --- the result and its chance levels --------------------------------------------------------

@dataclass
class LabelledResult:
    """Per-query results of one retrieval task; ``values`` maps each metric key (``map``,
    ``map@k``, ``p@1``, ``recall@k``, ``hit@k``) to its per-query values in [0, 1]."""

    query: np.ndarray          # code index of each scored query
    n_relevant: np.ndarray     # R: relevant gallery items per query
    gallery_size: np.ndarray   # N: gallery items ranked per query (the query itself excluded)
    values: dict[str, np.ndarray]
    ks: tuple[int, ...]
    left_out: int              # queries not scored: no relevant item in their gallery

    def summary(self) -> dict[str, float]:
        """Each metric's mean over the scored queries, in % (nan without queries)."""
        return {key: _mean_percent(values) for key, values in self.values.items()}

    def chance(self) -> dict[str, float]:
        """What a uniformly random order of each gallery scores, exactly, in %, with the keys
        of ``summary``: each query's expectation from its (N, R), averaged over the queries."""
        pairs = list(zip(self.gallery_size.tolist(), self.n_relevant.tolist()))
        levels = {pair: chance_levels(*pair, self.ks) for pair in set(pairs)}
        return {key: _mean_percent(np.array([levels[pair][key] for pair in pairs]))
                for key in self.values}

    def per_label(self, labels: Sequence[frozenset[str]]) -> list[tuple[str, int, float]]:
        """(label, queries, mAP %) for every label among the queries, best first; a query with
        several labels counts for each. ``labels`` are those given to ``retrieval_metrics``."""
        by_label: dict[str, list[float]] = defaultdict(list)
        for index, ap in zip(self.query.tolist(), self.values["map"].tolist()):
            for label in labels[index]:
                by_label[label].append(ap)
        rows = [(label, len(aps), 100.0 * float(np.mean(aps))) for label, aps in by_label.items()]
        return sorted(rows, key=lambda row: (-row[2], row[0]))


def _mean_percent(values: np.ndarray) -> float:
    return float(100.0 * values.mean()) if values.size else float("nan")


def _metric_keys(ks: Sequence[int]) -> list[str]:
    return (["map"] + [f"map@{k}" for k in ks] + ["p@1"]
            + [f"recall@{k}" for k in ks] + [f"hit@{k}" for k in ks])


def _all_missed(n: int, r: int, k: int) -> float:
    """C(n - r, k) / C(n, k): the chance that k of n items drawn at random miss all r relevant."""
    if n - r < k:
        return 0.0
    return math.exp(math.lgamma(n - r + 1) - math.lgamma(n - r - k + 1)
                    - math.lgamma(n + 1) + math.lgamma(n - k + 1))


@functools.lru_cache(maxsize=64)
def _harmonic(n: int) -> float:
    """H_n, kept: a result's queries share a few gallery sizes but have many relevant counts."""
    return math.fsum(1.0 / i for i in range(1, n + 1))


def chance_levels(n: int, r: int, ks: Sequence[int]) -> dict[str, float]:
    """Each metric's expectation (in [0, 1]) over uniformly random orders of a gallery of ``n``
    items, ``r`` of them relevant, with k' = min(k, n):

    - AP: (H_n + (r - 1) / (n - 1) * (n - H_n)) / n (H_n the n-th harmonic number), as
      ``Ranking.chance_map``; E[P(i) rel(i)] = r/n * (1 + (i - 1)(r - 1)/(n - 1)) / i summed.
    - AP@k (CSD's mean of P(1..k')): r / n, since E[hits in the top i] = i r / n for every i.
    - P@1: r / n.  recall@k: k' / n.  hit@k: 1 - C(n - r, k') / C(n, k').
    """
    harmonic = _harmonic(n)
    levels = {"map": (harmonic + (r - 1) / max(n - 1, 1) * (n - harmonic)) / n, "p@1": r / n}
    for k in ks:
        top = min(k, n)
        levels[f"map@{k}"] = r / n
        levels[f"recall@{k}"] = top / n
        levels[f"hit@{k}"] = 1.0 - _all_missed(n, r, top)
    return levels


# --- the metrics ------------------------------------------------------------------------------

def _codes_tensor(codes: np.ndarray) -> torch.Tensor:
    """The codes as a CPU float64 tensor, scored in float64 for the reason ``rank_queries``
    gives: crowded cosines rounded in float32 rank differently with chunk size and threads."""
    array = np.asarray(codes)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"codes must be a non-empty (images, dim) array, not shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("codes hold NaN or infinite values")
    return torch.from_numpy(array)


def _index_array(indices: np.ndarray | Sequence[int], size: int, name: str) -> np.ndarray:
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= size):
        raise ValueError(f"{name} holds indices outside 0..{size - 1}")
    if len(np.unique(array)) != len(array):
        raise ValueError(f"{name} holds an index twice")
    return array


def _checked_ks(ks: Sequence[int]) -> tuple[int, ...]:
    values = tuple(sorted({int(k) for k in ks}))
    if not values or values[0] < 1:
        raise ValueError(f"ks must be positive integers, not {list(ks)}")
    return values


class _Relevance:
    """Which gallery positions share a label with a label set: one sorted position array per
    label, unions built per chunk (not kept: on a multi-label column they can be large)."""

    def __init__(self, labels: Sequence[frozenset[str]], gallery: np.ndarray):
        members: dict[str, list[int]] = defaultdict(list)
        for position, index in enumerate(gallery.tolist()):
            for label in labels[index]:
                members[label].append(position)
        self.members = {label: np.array(found, dtype=np.int64) for label, found in members.items()}

    def positions(self, label_set: frozenset[str]) -> np.ndarray:
        parts = [self.members[label] for label in label_set if label in self.members]
        if len(parts) <= 1:
            return parts[0] if parts else np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(parts))

    def count(self, label_set: frozenset[str]) -> int:
        if len(label_set) == 1:
            return len(self.members.get(next(iter(label_set)), ()))
        return len(self.positions(label_set))


def _relevant_index(label_sets: list[frozenset[str]], own: np.ndarray, relevance: _Relevance,
                    width: int) -> torch.Tensor:
    """(rows, width) gallery positions relevant to each row's query, itself left out, padded
    with -1. Rows come sorted by label set, so each distinct set is looked up once."""
    table = np.full((len(label_sets), max(width, 1)), -1, dtype=np.int64)
    cache: dict[frozenset[str], np.ndarray] = {}
    for row, (label_set, position) in enumerate(zip(label_sets, own.tolist())):
        if label_set not in cache:
            cache[label_set] = relevance.positions(label_set)
        found = cache[label_set]
        found = found[found != position]
        table[row, : len(found)] = found
    return torch.from_numpy(table)


def _at_or_above(scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(rows, width) number of each row's scores >= each of its ascending thresholds.

    Few thresholds (relevant items): each row is compared with each directly, by the byte
    counting of ``evaluation/metrics.py``, cheaper than ordering the row. Many (a large label,
    a multi-label column): each row is sorted once and every threshold looked up in it."""
    if thresholds.shape[1] <= _COMPARE_WIDTH:
        return _count_at_least(scores, thresholds)
    ordered = np.sort(scores.numpy(), axis=1)
    size = ordered.shape[1]
    return torch.from_numpy(np.stack([size - np.searchsorted(row, limits, side="left")
                                      for row, limits in zip(ordered, thresholds.numpy())]))


def _score_chunk(scores: torch.Tensor, relevant_index: torch.Tensor, n_gallery: torch.Tensor,
                 ks: tuple[int, ...], harmonic: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric for a chunk of queries, from their scores against the gallery (the query's
    own item at -inf) and their relevant gallery positions (-1: padding)."""
    valid = relevant_index >= 0
    relevant = scores.gather(1, relevant_index.clamp(min=0)).masked_fill(~valid, -math.inf)
    ascending = relevant.sort(dim=1).values            # padding (-inf) first, the best last
    width = ascending.shape[1]
    n_relevant = valid.sum(1)
    real = torch.arange(width)[None, :] >= (width - n_relevant)[:, None]
    retrieved = _at_or_above(scores, ascending)
    # Relevant items >= each relevant score: its equals included (the first equal's place).
    relevant_retrieved = width - torch.searchsorted(ascending, ascending, right=False)
    # Pessimistic position: the j-th best relevant item comes after the j - 1 better ones and
    # after every irrelevant item scoring at least as high.
    rank_among_relevant = width - torch.arange(width)[None, :]
    position = torch.where(real, rank_among_relevant + retrieved - relevant_retrieved, 1)
    best = position[:, -1]
    r = n_relevant.double()
    precision = relevant_retrieved.double() / retrieved.clamp(min=1).double()
    values = {"map": torch.where(real, precision, 0.0).sum(1) / r, "p@1": (best == 1).double()}
    for k in ks:
        top = n_gallery.clamp(max=k)
        found = real & (position <= top[:, None])
        # sum over i <= k' of hits(i) / i = sum over found items at p of (H_k' - H_(p - 1))
        gain = harmonic[top][:, None] - harmonic[position - 1]
        values[f"map@{k}"] = torch.where(found, gain, 0.0).sum(1) / top.double()
        values[f"recall@{k}"] = found.sum(1).double() / r
        values[f"hit@{k}"] = (best <= top).double()
    return values


def _harmonic_numbers(n: int) -> torch.Tensor:
    """H_0 .. H_n in float64 (H_0 = 0)."""
    harmonic = torch.zeros(n + 1, dtype=torch.float64)
    harmonic[1:] = torch.cumsum(1.0 / torch.arange(1, n + 1, dtype=torch.float64), 0)
    return harmonic


def _rank_all(data: torch.Tensor, labels: Sequence[frozenset[str]], plan: dict[str, np.ndarray],
              gallery: np.ndarray, relevance: _Relevance, ks: tuple[int, ...],
              chunk_size: int) -> dict[str, np.ndarray]:
    """Every metric for every query of ``plan`` (queries, own gallery positions, R, N, and the
    result slot of each), a chunk of queries x the whole gallery at a time."""
    gallery_codes = data[torch.from_numpy(gallery)]
    harmonic = _harmonic_numbers(len(gallery))
    out = {key: np.empty(len(plan["query"])) for key in _metric_keys(ks)}
    # One buffer for every chunk's scores: no fresh memory to fault in for each chunk.
    buffer = torch.empty(min(chunk_size, len(plan["query"])), len(gallery), dtype=data.dtype)
    for start in range(0, len(plan["query"]), chunk_size):
        rows = slice(start, start + chunk_size)
        queries, own = plan["query"][rows], plan["own"][rows]
        scores = torch.mm(data[torch.from_numpy(queries)], gallery_codes.T, out=buffer[: len(queries)])
        mine = np.flatnonzero(own >= 0)
        scores[torch.from_numpy(mine), torch.from_numpy(own[mine])] = -math.inf   # out of its ranking
        index = _relevant_index([labels[q] for q in queries.tolist()], own, relevance,
                                int(plan["n_relevant"][rows].max()))
        chunk = _score_chunk(scores, index, torch.from_numpy(plan["n_gallery"][rows]), ks, harmonic)
        for key, value in chunk.items():
            out[key][plan["slot"][rows]] = value.numpy()
    return out


def _query_plan(labels: Sequence[frozenset[str]], queries: np.ndarray, gallery: np.ndarray,
                relevance: _Relevance, size: int) -> tuple[dict[str, np.ndarray], int]:
    """The queries with a relevant item, in scoring order, and how many were left out. Scoring
    goes by relevant count, then label set: a chunk pads little and looks each set up once;
    ``slot`` puts each result back in the order of ``queries``."""
    in_gallery = np.full(size, -1, dtype=np.int64)
    in_gallery[gallery] = np.arange(len(gallery))
    own = in_gallery[queries]
    sets = [labels[q] for q in queries.tolist()]
    labelled = np.array([bool(s) for s in sets], dtype=bool)
    counts = {label_set: relevance.count(label_set) for label_set in set(sets)}
    # A labelled query in the gallery is among its own set's members: take it out.
    n_relevant = np.array([counts[s] for s in sets], dtype=np.int64) - (labelled & (own >= 0))
    keep = np.flatnonzero(n_relevant > 0)
    set_id = {s: i for i, s in enumerate(sorted({sets[i] for i in keep.tolist()}, key=sorted))}
    order = keep[np.lexsort((np.array([set_id[sets[i]] for i in keep.tolist()], dtype=np.int64),
                             n_relevant[keep]))]
    plan = {"query": queries[order], "own": own[order], "n_relevant": n_relevant[order],
            "n_gallery": len(gallery) - (own[order] >= 0).astype(np.int64),
            "slot": np.searchsorted(keep, order)}
    return plan, len(queries) - len(keep)


def retrieval_metrics(codes: np.ndarray, labels: Sequence[frozenset[str]],
                      queries: np.ndarray | None = None, gallery: np.ndarray | None = None,
                      ks: Sequence[int] = (1, 10, 100), chunk_size: int = 256) -> LabelledResult:
    """Rank the gallery for every query by dot product and score it; relevant = the gallery
    items sharing at least one label with the query; a query is never its own gallery item.

    Without ``queries``/``gallery`` it is leave-one-out: every labelled row queries all other
    rows (unlabelled ones included, as distractors). ``queries`` and ``gallery`` are index arrays
    into ``codes``. A query with no relevant gallery item is not scored, only counted
    (``left_out``). Results come in the order of ``queries``.

    Per query, in the ranking's pessimistic order (ties: irrelevant items first), with N the
    gallery size, R the relevant count, k' = min(k, N) (k may exceed the gallery), P(i) the
    precision of the top i: AP over the whole gallery (scikit-learn's tie rule);
    AP@k = (1/k') sum_{i<=k'} P(i), CSD's mAP@k; P@1; recall@k = relevant items in the top k' / R;
    hit@k = 1 if a relevant item is in the top k' (CSD's "Recall@k"; ALADIN's IR-1 at k = 1).

    Exact, in chunks of ``chunk_size`` queries: memory is O(chunk x gallery), never N x N.
    """
    data = _codes_tensor(codes)
    if len(labels) != len(data):
        raise ValueError(f"{len(labels)} label sets for {len(data)} codes")
    ks = _checked_ks(ks)
    gallery = np.arange(len(data)) if gallery is None else _index_array(gallery, len(data), "gallery")
    if queries is None:   # leave-one-out: the labelled rows query
        queries = np.array([i for i, label_set in enumerate(labels) if label_set], dtype=np.int64)
    queries = _index_array(queries, len(data), "queries")
    relevance = _Relevance(labels, gallery)
    plan, left_out = _query_plan(labels, queries, gallery, relevance, len(data))
    values = _rank_all(data, labels, plan, gallery, relevance, ks, max(int(chunk_size), 1))
    back = np.argsort(plan["slot"])   # scoring order -> the order of ``queries``
    return LabelledResult(query=plan["query"][back], n_relevant=plan["n_relevant"][back],
                          gallery_size=plan["n_gallery"][back], values=values, ks=ks,
                          left_out=left_out)


def nearest(codes: np.ndarray, query_indices: Sequence[int], gallery: np.ndarray | None = None,
            k: int = 8, chunk_size: int = 256) -> np.ndarray:
    """(queries, k') code indices of each query's k most similar gallery items, best first, the
    query itself excluded (ties in gallery order), for a picture of the retrievals. k' is k
    clamped to the gallery (less one when a query is in it)."""
    data = _codes_tensor(codes)
    gallery = np.arange(len(data)) if gallery is None else _index_array(gallery, len(data), "gallery")
    queries = np.asarray(query_indices, dtype=np.int64).reshape(-1)
    in_gallery = np.full(len(data), -1, dtype=np.int64)
    in_gallery[gallery] = np.arange(len(gallery))
    own = in_gallery[queries]
    top = max(0, min(int(k), len(gallery) - int((own >= 0).any())))
    gallery_codes = data[torch.from_numpy(gallery)]
    found = []
    for start in range(0, len(queries), chunk_size):
        rows = slice(start, start + chunk_size)
        scores = data[torch.from_numpy(queries[rows])] @ gallery_codes.T
        mine = np.flatnonzero(own[rows] >= 0)
        scores[torch.from_numpy(mine), torch.from_numpy(own[rows][mine])] = -math.inf
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top]
        found.append(gallery[order.numpy()])
    return np.concatenate(found) if found else np.empty((0, top), dtype=np.int64)


# --- the query/database split ----------------------------------------------------------------

def query_database_split(labels: Sequence[frozenset[str]], query_fraction: float,
                         seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded split of the rows into (queries, database), each row on exactly one side.

    Stratified: each label with two or more images gets a quota of about ``query_fraction`` of
    its images (rounded up or down at random, so small labels give the fraction on average) and
    never all of them, so at least one stays in the database for its queries to find. Rows are
    visited in a seeded random order and become queries while every such label of theirs has
    quota left (multi-label rows use up several quotas). Unlabelled rows, and rows whose labels
    all have one image, stay in the database as distractors.
    """
    if not 0.0 < query_fraction < 1.0:
        raise ValueError(f"query_fraction must lie strictly between 0 and 1, not {query_fraction}")
    rng = np.random.default_rng(seed)
    counts = Counter(label for label_set in labels for label in label_set)
    quota = {}
    for label in sorted(label for label, count in counts.items() if count >= 2):   # fixed draw order
        exact = query_fraction * counts[label]
        quota[label] = min(int(exact) + int(rng.random() < exact - int(exact)), counts[label] - 1)
    is_query = np.zeros(len(labels), dtype=bool)
    for row in rng.permutation(len(labels)).tolist():
        own = [label for label in labels[row] if label in quota]
        if own and all(quota[label] > 0 for label in own):
            is_query[row] = True
            for label in own:
                quota[label] -= 1
    return np.flatnonzero(is_query), np.flatnonzero(~is_query)


def _roles(size: int, queries: np.ndarray, gallery: np.ndarray) -> list[str]:
    role = np.full(size, "", dtype=object)
    role[np.asarray(gallery, dtype=np.int64)] = ROLES[1]
    query_rows = np.asarray(queries, dtype=np.int64)
    if (role[query_rows] != "").any():
        raise ValueError("a row is both a query and in the database")
    role[query_rows] = ROLES[0]
    if (role == "").any():
        raise ValueError(f"{int((role == '').sum())} rows are neither query nor database")
    return role.tolist()


def write_split(path: str | Path, ids: Sequence[str], queries: np.ndarray, gallery: np.ndarray) -> None:
    """Write the split as a CSV of ``id,role`` (role query or database), one line per row, so
    that a later run (or another model) scores the very same split."""
    write_csv(path, [ID_COLUMN, "role"], zip(ids, _roles(len(ids), queries, gallery)))


def read_split(path: str | Path, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(queries, database) row indices of a split file written by ``write_split`` for a table
    with these ``ids``; an id the table lacks, a table id the split lacks, a repeated id or an
    unknown role is a LabelTableError naming the file, the row and the id."""
    source = Path(path)
    if not source.is_file():
        raise LabelTableError(f"{source}: no such split file")
    position = {name: i for i, name in enumerate(ids)}
    role: dict[str, str] = {}
    with open(source, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not {ID_COLUMN, "role"} <= set(reader.fieldnames or []):
            raise LabelTableError(f"{source}: a split file has the columns id, role "
                                  f"(columns found: {reader.fieldnames or []})")
        for number, row in enumerate(reader, start=1):
            name, value = (row[ID_COLUMN] or "").strip(), (row["role"] or "").strip()
            if name not in position:
                raise LabelTableError(f"{_where(source, number, ID_COLUMN)}: the id {name!r} "
                                      "is not in the label table")
            if name in role:
                raise LabelTableError(f"{_where(source, number, ID_COLUMN)}: the id {name!r} again")
            if value not in ROLES:
                raise LabelTableError(f"{_where(source, number, 'role')}: role {value!r} "
                                      f"is not one of {list(ROLES)}")
            role[name] = value
    missing = [name for name in ids if name not in role]
    if missing:
        raise LabelTableError(f"{source}: {len(missing)} ids of the label table are not in the split "
                              f"(first: {missing[:_LISTED]})")
    is_query = np.array([role[name] == ROLES[0] for name in ids], dtype=bool)
    return np.flatnonzero(is_query), np.flatnonzero(~is_query)


# --- scoring a table and reporting it --------------------------------------------------------

def score_table(codes_by_model: dict[str, np.ndarray], table: LabelTable, protocol: str, *,
                split: tuple[np.ndarray, np.ndarray] | None = None,
                ks: Sequence[int] = (1, 10, 100),
                chunk_size: int = 256) -> dict[str, dict[str, LabelledResult]]:
    """{model: {label column: result}}: each model's codes (one row per table row) scored on
    every label column, leave-one-out (``"loo"``) or on ``split`` = (queries, database)
    (``"split"``; make one with ``query_database_split`` or ``read_split``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, not {protocol!r}")
    if protocol != "loo" and split is None:
        raise ValueError(f"the {protocol} protocol needs split=(queries, database)")
    queries, gallery = split if protocol != "loo" else (None, None)
    results = {}
    for model, codes in codes_by_model.items():
        if len(codes) != len(table):
            raise ValueError(f"{model}: {len(codes)} codes for the {len(table)} images of {table.source}")
        results[model] = {column: retrieval_metrics(codes, labels, queries, gallery, ks, chunk_size)
                          for column, labels in table.columns.items()}
    return results


# The metrics whose differences between models get intervals.
DIFFERENCE_KEYS = ("map", "p@1")


def label_differences(results: dict[str, dict[str, LabelledResult]],
                      columns: dict[str, list[frozenset[str]]], resamples: int,
                      seed: int) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{column: {model: {"map" | "p@1": [difference, low, high]}}}: the first model of
    ``results`` minus each other one, in points, with the 95% interval of a paired bootstrap
    that resamples the queries by their label (one artist's works query together:
    evaluation/bootstrap.py). Empty with fewer than two models or ``resamples`` 0."""
    names = list(results)
    if len(names) < 2 or not resamples:
        return {}
    out: dict[str, dict] = {}
    for column, labels in columns.items():
        base = results[names[0]][column]
        clusters = ["|".join(sorted(labels[index])) for index in base.query.tolist()]
        out[column] = {}
        for name in names[1:]:
            other = results[name][column]
            if not np.array_equal(other.query, base.query):
                raise ValueError(f"{name} and {names[0]} were scored on different queries of {column}")
            out[column][name] = {key: paired_difference(base.values[key], other.values[key], clusters,
                                                        resamples=resamples, seed=seed).as_list()
                                 for key in DIFFERENCE_KEYS if base.values[key].size}
    return out


def _difference_table(reference: str, column: str, by_model: dict[str, dict[str, list[float]]]
                      ) -> list[str]:
    lines = [f"`{reference}` minus each model, points, and the 95% interval of a paired bootstrap "
             f"with the queries resampled by {column} (an interval that holds 0: this collection "
             "does not tell the two apart):", "",
             f"| model | mAP: {reference} minus model | P@1: {reference} minus model |", "|---|---|---|"]
    for model, entry in by_model.items():
        cells = [interval_text(entry[key]) if key in entry else "–" for key in DIFFERENCE_KEYS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _cell(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def _label_list(rows: list[tuple[str, int, float]]) -> str:
    return ", ".join(f"{label} {_cell(value)} ({queries})" for label, queries, value in rows)


def _per_label_lines(results: dict[str, dict[str, LabelledResult]], column: str,
                     labels: list[frozenset[str]], shown: int) -> list[str]:
    lines = []
    for model, by_column in results.items():
        rows = by_column[column].per_label(labels)
        worst = rows[max(shown, len(rows) - shown):][::-1]
        lines.append(f"- {model}: best {_label_list(rows[:shown])}"
                     + (f"; worst {_label_list(worst)}" if worst else ""))
    return lines


def _column_table(results: dict[str, dict[str, LabelledResult]], column: str, at: int) -> list[str]:
    first = next(iter(results.values()))[column]
    at = at if at in first.ks else first.ks[-1]
    keys = ["map"] + [f"map@{k}" for k in first.ks] + ["p@1", f"recall@{at}", f"hit@{at}"]
    names = ["mAP"] + [f"mAP@{k}" for k in first.ks] + ["P@1", f"recall@{at}", f"hit@{at}"]
    count = str(len(first.query))
    lines = ["| model | " + " | ".join(names) + " | queries |", "|---" * (len(names) + 2) + "|"]
    for model, by_column in results.items():
        summary = by_column[column].summary()
        lines.append(f"| {model} | " + " | ".join(_cell(summary[key]) for key in keys) + f" | {count} |")
    # Chance depends on the labels and the split only: the first model's stands for all.
    chance = first.chance()
    return lines + ["| *chance* | " + " | ".join(_cell(chance[key]) for key in keys) + f" | {count} |"]


def markdown_section(results: dict[str, dict[str, LabelledResult]], table: LabelTable, *,
                     protocol: str, heading: str = "Labelled retrieval", at: int = 10,
                     shown: int = 3, notes: dict[str, str] | None = None,
                     differences: dict[str, dict] | None = None) -> list[str]:
    """Report lines: per label column, a table of models (then the *chance* row) by mAP, mAP@k,
    P@1, recall@``at``, hit@``at`` (in %) and query count, the first model minus the others with
    intervals (``differences``: ``label_differences``), and each model's ``shown`` best and worst
    labels by mAP; ``notes`` adds a sentence under a column's heading."""
    notes, differences = notes or {}, differences or {}
    how = PROTOCOLS[protocol]
    lines = [f"## {heading} ({protocol})", "",
             f"{table.source.name}, {len(table)} images; {how}. Relevant: sharing a label; "
             "mAP@k is CSD's (mean precision over the top 1..k), hit@k CSD's Recall@k "
             "(docs/labelled.md). Values in %.", ""]
    for column, labels in table.columns.items():
        first = next(iter(results.values()))[column]
        lines += [f"### {column}", "",
                  f"{len(first.query)} queries ({first.left_out} left out: nothing relevant in "
                  f"their gallery); gallery of up to {int(first.gallery_size.max(initial=0))} images."
                  + (f" {notes[column]}" if column in notes else ""), ""]
        lines += _column_table(results, column, at) + [""]
        if differences.get(column):
            lines += _difference_table(next(iter(results)), column, differences[column]) + [""]
        lines += [f"Per {column} (mAP, queries):"]
        lines += _per_label_lines(results, column, labels, shown) + [""]
    return lines
