"""One model's view of the collection, loaded once: its faiss index, its codes, the model that
embeds uploads and the tagging head that reads words; queries are answered from memory.

Every check is the search command's (``stylecode.query``): a model whose hash differs from the
index's is refused, and so is a head trained on another model's codes.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from stylecode.identity import StyleCodeError
from stylecode.index import SearchIndex, load_index
from stylecode.model import StyleModel
from stylecode.query import (best, collection_codes, index_config, index_model, index_recipe,
                             load_head, text_scores)
from tagging import TagHead, TextEncoder

Hits = list[tuple[int, float]]   # (position in the index, cosine), best first


@dataclass
class Space:
    name: str
    index: SearchIndex
    codes: np.ndarray                  # (count, dim) unit rows, index order
    cfg: dict
    model: StyleModel | None = None    # embeds uploads; None: see upload_note
    upload_note: str = ""
    head: TagHead | None = None
    positions: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)   # torch modules: one at a time

    def __post_init__(self) -> None:
        self.positions = {item_id: p for p, item_id in enumerate(self.index.ids)}

    def _hits(self, queries: np.ndarray, k: int) -> Hits:
        scores, positions = self.index.search(queries, k)
        return [(int(p), float(s)) for s, p in zip(scores[0], positions[0]) if p >= 0]

    def by_id(self, item_id: str, k: int) -> Hits | None:
        """Neighbours of an indexed item's own code; None when this index lacks the item."""
        position = self.positions.get(item_id)
        return None if position is None else self._hits(self.codes[position:position + 1], k)

    def by_image(self, image: Image.Image, k: int) -> Hits:
        if self.model is None:
            raise StyleCodeError(self.upload_note)
        with self.lock:
            code = self.model.embed([image])
        return self._hits(code, k)

    def by_words(self, text: str, k: int) -> Hits:
        if self.head is None:
            raise StyleCodeError(f"no tagging head for model {self.name!r} (--head)")
        with self.lock:
            scores = text_scores(self.head, self.codes, text)
        top = best(scores, k)
        return [(int(p), float(scores[p])) for p in top]


def _upload_model(index: SearchIndex, cfg: dict) -> tuple[StyleModel | None, str]:
    """The index's model, or None and why (an index of foreign embeddings records none);
    a model of another hash than the index is an error, as in pipeline/search.py."""
    try:
        recipe = index_recipe(index)
    except StyleCodeError as exc:
        return None, f"uploads cannot be embedded: {exc}"
    return index_model(index, cfg, recipe), ""


def open_space(folder: str | Path, cfg: dict | None = None, overrides: Sequence[str] = (),
               uploads: bool = True) -> Space:
    """Load an index folder with its codes (and, with ``uploads``, its model)."""
    index = load_index(folder)
    cfg = index_config(index, cfg, overrides)
    model, note = _upload_model(index, cfg) if uploads else (None, "uploads are switched off")
    return Space(index.info.name, index, collection_codes(index), cfg, model, note)


def attach_heads(spaces: Sequence[Space], heads: Sequence[str | Path],
                 text_model: str | Path | None = None) -> None:
    """Give each head to the space whose model it was trained on; a head that fits none is
    refused, naming every index's model."""
    if not heads:
        return
    text = TextEncoder(text_model)
    for path in heads:
        errors = []
        for space in spaces:
            try:
                head = load_head(path, space.index, text)
            except StyleCodeError as exc:
                errors.append(str(exc))
                continue
            space.head = head
            break
        else:
            raise StyleCodeError("; ".join(errors))


def name_apart(spaces: Sequence[Space]) -> None:
    """Two indexes of models with one name (e.g. two runs called nst) get told apart."""
    seen: dict[str, int] = {}
    for space in spaces:
        seen[space.name] = seen.get(space.name, 0) + 1
        if seen[space.name] > 1:
            space.name = f"{space.name}#{seen[space.name]}"
