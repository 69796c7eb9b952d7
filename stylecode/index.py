"""Nearest-neighbour indexes (faiss) over a folder of embedding files.

Codes are unit vectors, so the inner product is the cosine. Kinds:
- ``flat``: exact search (``IndexFlatIP``), the default: every query is compared with every
  code, fine up to a few million codes;
- ``hnsw``: a graph (``HNSW<M>``), approximate, fast, as large as the codes;
- ``ivfpq``: inverted lists over product-quantised codes (``IVF<lists>,PQ<bytes>x<bits>``),
  approximate and compressed (``pq_bytes`` per image instead of ``4 dim``).
An approximate index's recall@k is measured when it is built: codes of the collection are
used as queries and its top k (the query itself left out) compared with exact search's.

An index folder holds ``index.faiss`` (the faiss index), ``items.parquet`` (id and path of
each indexed code, in index order) and ``index.json`` (written last: the model's name, hash,
dimension and recipe, the kind and its parameters, the recall, and the embeddings folder).
An index folder may be a URL (``common.storage``): each file is uploaded whole.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common import storage
from common.schema import Search
from stylecode.identity import StyleCodeError
from stylecode.store import Embeddings, ModelInfo

KINDS = ("flat", "hnsw", "ivfpq")
INDEX_FILE, ITEMS_FILE, META_FILE = "index.faiss", "items.parquet", "index.json"
# faiss wants this many training points per centroid it trains (it warns below).
POINTS_PER_CENTROID = 39


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(limit, 1) + 1) if n % d == 0)


def factory_string(kind: str, count: int, dim: int, scfg: Search) -> str:
    """The faiss factory string of ``kind`` for ``count`` codes of ``dim`` (config ``search``)."""
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{scfg.hnsw_neighbours}"
    if kind == "ivfpq":
        lists = scfg.ivf_lists or max(1, min(round(4 * math.sqrt(count)), count // POINTS_PER_CENTROID))
        pq_bytes = scfg.pq_bytes or _largest_divisor_at_most(dim, dim // 4)
        if dim % pq_bytes:
            raise StyleCodeError(f"search.pq_bytes={pq_bytes} must divide the code dimension {dim}")
        return f"IVF{lists},PQ{pq_bytes}x{scfg.pq_bits}"
    raise StyleCodeError(f"unknown index kind '{kind}'; known: {', '.join(KINDS)}")


def search_parameters(kind: str, scfg: Search) -> dict[str, int]:
    """Query-time settings, applied with faiss.ParameterSpace (saved with the index)."""
    return {"hnsw": {"efSearch": scfg.hnsw_ef_search}, "ivfpq": {"nprobe": scfg.nprobe}
            }.get(kind, {})


def _check_trainable(index: faiss.Index, count: int, factory: str) -> None:
    """faiss aborts k-means with fewer points than centroids: say which setting to lower."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return
    pq_centroids = 2 ** faiss.downcast_index(ivf).pq.nbits
    need = max(ivf.nlist, pq_centroids)
    if count < need:
        raise StyleCodeError(f"index {factory} needs at least {need} codes to train, the collection "
                             f"has {count}: lower search.ivf_lists / search.pq_bits, or use "
                             "search.index=flat or hnsw")


def build_index(codes: np.ndarray, kind: str, scfg: Search) -> tuple[faiss.Index, str]:
    """A trained, filled faiss index of ``codes`` (n, dim) and its factory string."""
    count, dim = codes.shape
    factory = factory_string(kind, count, dim, scfg)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index.hnsw.efConstruction = scfg.hnsw_ef_construction
    if kind == "ivfpq":  # polysemous codes serve Hamming-filtered search only, unused here, and
        # training them took 4x to 15x the rest of the build (2000 codes: 27 s against 7 s)
        faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    _check_trainable(index, count, factory)
    index.train(codes)
    index.add(codes)
    for name, value in search_parameters(kind, scfg).items():
        faiss.ParameterSpace().set_index_parameter(index, name, value)
    return index, factory


def _without(rows: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """Each row's first ``k`` positions other than its query's own (and faiss's -1 padding)."""
    return np.array([[p for p in row if p != own and p >= 0][:k] for row, own in zip(rows, exclude)],
                    dtype=object)


def measure_recall(index: faiss.Index, codes: np.ndarray, k: int, queries: int, seed: int) -> dict:
    """Recall@k of ``index`` against exact search, over ``queries`` codes of the collection
    drawn with ``seed`` (each query's own code left out of both result lists)."""
    k = min(k, len(codes) - 1)
    picked = np.random.default_rng(seed).choice(len(codes), size=min(queries, len(codes)), replace=False)
    exact = faiss.IndexFlatIP(codes.shape[1])
    exact.add(codes)
    truth = _without(exact.search(codes[picked], k + 1)[1], picked, k)
    found = _without(index.search(codes[picked], k + 1)[1], picked, k)
    hits = [len(set(t) & set(f)) / k for t, f in zip(truth, found)]
    return {"k": k, "queries": len(picked), "recall": float(np.mean(hits))}


@dataclass
class SearchIndex:
    """A loaded index folder."""

    folder: str | Path
    index: faiss.Index
    info: ModelInfo
    ids: list[str]
    paths: list[str]
    meta: dict

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions), each (queries, k), best first; position -1 pads past the end."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self.ids)))

    def check_model(self, info: ModelInfo, what: str) -> None:
        """Refuse a model (a query's or a head's) other than the one the index was built with."""
        if not self.info.same_model(info):
            raise StyleCodeError(
                f"index {self.folder} was built with model {self.info.name!r} (hash "
                f"{self.info.hash}, {self.info.dim}-d); {what} is {info.name!r} (hash {info.hash}, "
                f"{info.dim}-d): embed the collection with that model and build its index, or "
                f"query with {self.info.name!r}")


def save_index(folder: str | Path, index: faiss.Index, embeddings: Embeddings, meta: dict) -> None:
    """Write the three files; ``index.json`` last, so a folder with it is complete."""
    storage.write_bytes(storage.join(folder, INDEX_FILE), faiss.serialize_index(index).tobytes())
    with storage.open_output(storage.join(folder, ITEMS_FILE)) as handle:
        pq.write_table(pa.table({"id": pa.array(embeddings.ids, pa.string()),
                                 "path": pa.array(embeddings.paths, pa.string())}), handle)
    info = embeddings.info
    storage.write_json(storage.join(folder, META_FILE),
                       {**meta, "model": {**meta.get("model", {}), "name": info.name,
                                          "hash": info.hash, "dim": info.dim},
                        "count": len(embeddings.ids)})


def load_index(folder: str | Path) -> SearchIndex:
    """Read an index folder; a missing or damaged file is an error naming it."""
    folder = storage.path_or_url(folder)
    meta_path = storage.join(folder, META_FILE)
    if not storage.is_file(meta_path):
        raise StyleCodeError(f"{folder} is not a search index (no {META_FILE}): build one with "
                             "pipeline/search.py build")
    meta = json.loads(storage.read_text(meta_path))
    try:
        data = storage.read_bytes(storage.join(folder, INDEX_FILE))
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        with storage.open_input(storage.join(folder, ITEMS_FILE)) as handle:
            items = pq.read_table(handle)
    except (OSError, RuntimeError, pa.ArrowException) as exc:
        raise StyleCodeError(f"index {folder} is damaged ({exc}): build it again") from None
    model = meta["model"]
    if index.ntotal != items.num_rows or index.ntotal != meta["count"]:
        raise StyleCodeError(f"index {folder} is damaged: {index.ntotal} codes, "
                             f"{items.num_rows} items, {meta['count']} expected: build it again")
    return SearchIndex(folder, index, ModelInfo(model["name"], model["hash"], model["dim"]),
                       items["id"].to_pylist(), items["path"].to_pylist(), meta)
