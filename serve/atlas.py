"""A 2-D map of a collection's style codes (scikit-learn's t-SNE), computed once per index.

t-SNE keeps neighbours together, which is what a walk through the style space needs; it
costs O(n log n) per iteration, so a large collection is mapped through a seeded random
sample of ``points`` codes. The map is saved as ``map.json`` in the index's cache folder with
a key made of the index's own files (and the map's settings): a rebuilt index, or other
settings, get a new map; anything else reads the saved one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.files import write_json
from stylecode.identity import file_sha256
from stylecode.index import INDEX_FILE, ITEMS_FILE, META_FILE, SearchIndex

MAP_FILE = "map.json"
PERPLEXITY = 30.0


@dataclass(frozen=True)
class MapSettings:
    points: int = 5000   # codes mapped at most (a seeded sample beyond that)
    seed: int = 0


def map_key(index: SearchIndex, settings: MapSettings) -> str:
    """Changes whenever one of the index's files or the settings change."""
    files = {name: file_sha256(index.folder / name) for name in (INDEX_FILE, ITEMS_FILE, META_FILE)}
    payload = json.dumps({"files": files, "points": settings.points, "seed": settings.seed,
                          "method": "tsne", "perplexity": PERPLEXITY}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def sample(count: int, settings: MapSettings) -> np.ndarray:
    """Positions of the codes on the map, in index order."""
    if count <= settings.points:
        return np.arange(count)
    return np.sort(np.random.default_rng(settings.seed).choice(count, settings.points, replace=False))


def project(codes: np.ndarray, seed: int) -> np.ndarray:
    """(n, 2) coordinates in [0, 1]: t-SNE on cosine distances (PCA start, so the same codes
    give the same map); fewer than 5 codes are laid out by their first two principal axes."""
    n = len(codes)
    if n >= 5:
        from sklearn.manifold import TSNE
        xy = TSNE(n_components=2, perplexity=min(PERPLEXITY, (n - 1) / 3), metric="cosine",
                  init="pca", random_state=seed).fit_transform(codes.astype(np.float64))
    else:
        centred = codes - codes.mean(axis=0)
        xy = (centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T) if n > 1 else np.zeros((n, 2))
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    span = xy.max(axis=0) - xy.min(axis=0)
    return (xy - xy.min(axis=0)) / np.where(span > 0, span, 1.0)


def collection_map(index: SearchIndex, codes: np.ndarray, cache: Path,
                   settings: MapSettings) -> dict:
    """``{"key", "positions", "xy"}``: the saved map when its key matches, else a new one
    (saved when the cache folder takes writes; a read-only index is mapped per start)."""
    key = map_key(index, settings)
    path = cache / MAP_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved
    positions = sample(len(codes), settings)
    xy = project(codes[positions], settings.seed)
    result = {"key": key, "positions": positions.tolist(), "xy": np.round(xy, 5).tolist()}
    try:
        write_json(path, result)
    except OSError as exc:
        print(f"[serve] map of {index.folder} not cached ({exc})", flush=True)
    return result
