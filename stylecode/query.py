"""Querying an index folder: the model that may query it, its codes, and words through a head.

Shared by ``pipeline/search.py`` (one query per command) and ``serve`` (a page that keeps
everything loaded): both refuse a model or a tagging head of another hash the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from common import storage
from common.config import RESOLVED_NAME, load_config
from stylecode.identity import Recipe, StyleCodeError
from stylecode.index import SearchIndex
from stylecode.model import StyleModel, build
from stylecode.store import ModelInfo, read_folder
from tagging import TagHead, TaggingError
from tagging.text import TextSpace

# Codes projected into the text space at once by a text query (bounds its memory).
TEXT_CHUNK = 65536


def index_recipe(index: SearchIndex) -> Recipe:
    """The recipe pipeline/embed.py recorded for the index's codes."""
    if "models" not in index.meta["model"]:
        raise StyleCodeError(f"index {index.folder} does not record its model (embeddings made "
                             "without pipeline/embed.py): name it with --checkpoint or --baseline")
    return Recipe.from_dict(index.meta["model"])


def index_config(index: SearchIndex, cfg: dict | None, overrides: Sequence[str] = ()) -> dict:
    """``cfg`` when given, else the config saved beside the embeddings (the one baselines were
    embedded with, so their hash matches), else the default config."""
    if cfg is not None:
        return cfg
    saved = storage.join(index.meta["embeddings"], RESOLVED_NAME)
    return load_config(saved if storage.is_file(saved) else None, list(overrides))


def index_model(index: SearchIndex, cfg: dict, recipe: Recipe | None = None,
                device: str | None = None) -> StyleModel:
    """``recipe``'s model, else the one the collection was embedded with, built from ``cfg``
    and checked against the index (another hash is refused, naming both)."""
    model = build(recipe or index_recipe(index), cfg, device)
    index.check_model(ModelInfo(model.name, model.hash, model.dim), "the query model")
    return model


def collection_codes(index: SearchIndex) -> np.ndarray:
    """The indexed codes, read back from the embedding files (an index may hold only
    compressed ones), checked to be the very codes the index was built from."""
    embeddings = read_folder(index.meta["embeddings"])
    if embeddings.ids != index.ids or not index.info.same_model(embeddings.info):
        raise StyleCodeError(f"{index.meta['embeddings']} changed since index {index.folder} was "
                             "built: build the index again")
    return embeddings.codes


def load_head(path: str | Path, index: SearchIndex, text: TextSpace) -> TagHead:
    """A tagging head for words queries of ``index`` (trained on codes of the index's model),
    bound to ``text``, e.g. ``tagging.TextEncoder(folder)``."""
    try:
        return TagHead.load(path, text, code_dim=index.info.dim,
                            image_model_hash=index.info.hash)
    except TaggingError as exc:
        raise StyleCodeError(f"{exc} (index {index.folder}: model {index.info.name!r}, hash "
                             f"{index.info.hash})") from None


def text_scores(head: TagHead, codes: np.ndarray, text: str) -> np.ndarray:
    """Each code's cosine with ``text`` in the head's text space, in chunks of TEXT_CHUNK."""
    return np.concatenate([head.score(codes[start:start + TEXT_CHUNK], [text])[:, 0]
                           for start in range(0, len(codes), TEXT_CHUNK)])


def best(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first (ties in collection order)."""
    return np.argsort(-scores, kind="stable")[:k]


def results(index: SearchIndex, scores: np.ndarray, positions: np.ndarray) -> list[tuple[str, float, str]]:
    """(path, score, id) of each position, faiss's -1 padding left out."""
    return [(index.paths[p], float(s), index.ids[p]) for s, p in zip(scores, positions) if p >= 0]
