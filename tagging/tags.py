"""Tag lists per image: validation, the vocabulary, and the ground-truth matrix.

Tags come from user files (a manifest's ``tags`` column), so every mistake is reported with the
source and the row: a row that is a bare string instead of a list (a common slip that would
otherwise be read as a list of characters), an empty list, or an element that is not a string.
Tags are stripped of surrounding whitespace and de-duplicated within a row; case is kept (the
text encoder decides what case means).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


class TaggingError(ValueError):
    """A user-facing error of the tagging package: bad input, a mismatched file or model."""


def _row_name(source: str, index: int, row_ids: Sequence[str] | None) -> str:
    label = f"{source}, row {index}"
    return f"{label} ({row_ids[index]})" if row_ids is not None else label


def _clean_row(row: object, where: str) -> list[str]:
    if isinstance(row, (str, bytes)):
        raise TaggingError(f"{where}: tags must be a list of strings, got a single string "
                           f"{row!r} (wrap it in a list)")
    if not isinstance(row, (list, tuple, np.ndarray)):
        raise TaggingError(f"{where}: tags must be a list of strings, got {type(row).__name__}")
    tags: list[str] = []
    for tag in row:
        if not isinstance(tag, str):
            raise TaggingError(f"{where}: every tag must be a string, got "
                               f"{type(tag).__name__} {tag!r}")
        tag = tag.strip()
        if not tag:
            raise TaggingError(f"{where}: empty tag")
        if tag not in tags:
            tags.append(tag)
    if not tags:
        raise TaggingError(f"{where}: empty tag list (every image needs at least one tag)")
    return tags


def validate_tag_rows(rows: Sequence[object], source: str = "tags",
                      row_ids: Sequence[str] | None = None) -> list[list[str]]:
    """Checked, stripped, de-duplicated tag lists; errors name ``source`` and the row (and its
    id from ``row_ids`` when given)."""
    if row_ids is not None and len(row_ids) != len(rows):
        raise TaggingError(f"{source}: {len(rows)} tag rows but {len(row_ids)} row ids")
    return [_clean_row(row, _row_name(source, i, row_ids)) for i, row in enumerate(rows)]


def build_vocabulary(rows: Iterable[Sequence[str]]) -> list[str]:
    """Every distinct tag of the (validated) rows, sorted so that a vocabulary is reproducible."""
    return sorted({tag for row in rows for tag in row})


def truth_matrix(rows: Sequence[Sequence[str]], vocabulary: Sequence[str],
                 source: str = "tags") -> np.ndarray:
    """Boolean (images, vocabulary) matrix: True where the image carries the tag. A tag missing
    from the vocabulary is an error (it could never be ranked, so it would be silently lost)."""
    column = {tag: j for j, tag in enumerate(vocabulary)}
    if len(column) != len(vocabulary):
        raise TaggingError(f"{source}: the vocabulary has duplicate tags")
    truth = np.zeros((len(rows), len(vocabulary)), dtype=bool)
    for i, row in enumerate(rows):
        for tag in row:
            if tag not in column:
                raise TaggingError(f"{source}, row {i}: tag {tag!r} is not in the vocabulary")
            truth[i, column[tag]] = True
    return truth


def unseen_mask(vocabulary: Sequence[str], seen: Iterable[str]) -> np.ndarray:
    """Boolean mask over ``vocabulary``: True for tags not in ``seen`` (the training vocabulary),
    i.e. the zero-shot tags."""
    seen_set = set(seen)
    return np.array([tag not in seen_set for tag in vocabulary], dtype=bool)
