"""The alignment head: frozen style codes -> a frozen text encoder's space.

Training is contrastive over the whole training vocabulary: for a batch of images,
logits = normalise(head(code)) @ tag_embeddings.T / temperature, and every tag of an image is a
positive (multi-positive InfoNCE: the mean of the log-softmax over the image's tags, as in
supervised contrastive learning, so an image with many tags does not outweigh one with few).
The optional text -> image direction ranks the batch's images for each tag present in it.
Because the text side stays frozen, a tag never seen in training still lands near the tags it
is similar to, which is what makes tagging zero-shot.
"""
from __future__ import annotations

import pickle
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tagging.tags import TaggingError, build_vocabulary, truth_matrix, validate_tag_rows
from tagging.text import TextEncoder, TextSpace

FORMAT = "nststyle-tag-head/1"


@dataclass
class HeadConfig:
    """Head architecture and training; the defaults train on ~500 codes in seconds on a CPU."""

    hidden: int = 0             # 0: a linear map; > 0: an MLP with one hidden layer this wide
    temperature: float = 0.07   # softmax temperature of the cosine logits
    symmetric: bool = True      # add the text -> image direction to the loss
    epochs: int = 60
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.batch_size < 1 or self.epochs < 0 or self.hidden < 0:
            raise TaggingError(f"tag head settings out of range (temperature > 0, batch_size >= 1,"
                               f" epochs >= 0, hidden >= 0 needed): {self}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HeadConfig:
        """A config from a mapping (a YAML section); an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TaggingError(f"unknown tag head setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


class AlignmentHead(nn.Module):
    """Linear or one-hidden-layer MLP; outputs unit vectors, comparable to text embeddings."""

    def __init__(self, code_dim: int, text_dim: int, hidden: int = 0) -> None:
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(code_dim, hidden), nn.GELU(),
                                     nn.Linear(hidden, text_dim))
        else:
            self.net = nn.Sequential(nn.Linear(code_dim, text_dim))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(codes), dim=-1)


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over rows with a positive of -(mean log-softmax over the row's positives)."""
    log_prob = logits.log_softmax(dim=1)
    n_positive = positives.sum(1)
    keep = n_positive > 0
    return (-(log_prob * positives).sum(1)[keep] / n_positive[keep]).mean()


def contrastive_loss(projected: torch.Tensor, tag_embeddings: torch.Tensor,
                     positives: torch.Tensor, config: HeadConfig) -> torch.Tensor:
    """Image -> tag InfoNCE over the vocabulary, averaged with tag -> image when symmetric."""
    logits = projected @ tag_embeddings.T / config.temperature
    loss = multi_positive_nce(logits, positives)
    if config.symmetric:
        loss = (loss + multi_positive_nce(logits.T, positives.T)) / 2
    return loss


def _check_codes(codes: np.ndarray, code_dim: int | None, what: str) -> torch.Tensor:
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.isfinite(codes).all():
        raise TaggingError(f"codes must be a finite (images, dim) array, got shape {codes.shape}")
    if code_dim is not None and codes.shape[1] != code_dim:
        raise TaggingError(f"codes have dimension {codes.shape[1]} but this head takes "
                           f"{code_dim}-d codes of {what}")
    return torch.from_numpy(codes.astype(np.float32))


class TagHead:
    """A trained head bound to its text encoder: scores codes against any tag vocabulary."""

    def __init__(self, module: AlignmentHead, config: HeadConfig, text: TextSpace,
                 vocabulary: list[str], code_dim: int, image_model: str,
                 image_model_hash: str, losses: list[float]) -> None:
        self.module = module.eval()
        self.config = config
        self.text = text
        self.vocabulary = vocabulary          # the training tags
        self.code_dim = code_dim
        self.image_model = image_model
        self.image_model_hash = image_model_hash
        self.losses = losses                  # mean training loss per epoch

    def project(self, codes: np.ndarray) -> np.ndarray:
        """(images, text dim) unit vectors in the text space."""
        x = _check_codes(codes, self.code_dim, f"image model {self.image_model!r}")
        with torch.no_grad():
            return self.module(x).numpy()

    def score(self, codes: np.ndarray, vocabulary: Sequence[str] | None = None) -> np.ndarray:
        """(images, tags) cosine similarities against ``vocabulary`` (default: training tags);
        any tag text can be scored, seen in training or not."""
        tags = self.vocabulary if vocabulary is None else vocabulary
        return self.project(codes) @ self.text.embed(tags).T

    def top_tags(self, codes: np.ndarray, vocabulary: Sequence[str], k: int) -> list[list[str]]:
        """The ``k`` best tags of each image, best first (stable order among ties)."""
        order = np.argsort(-self.score(codes, vocabulary), axis=1, kind="stable")[:, :k]
        return [[vocabulary[j] for j in row] for row in order]

    def search(self, query: str, codes: np.ndarray, k: int) -> np.ndarray:
        """Positions of the ``k`` images that best match the words ``query``, best first."""
        scores = self.score(codes, [query])[:, 0]
        return np.argsort(-scores, kind="stable")[:k]

    def save(self, path: str | Path) -> Path:
        """Write the head (``torch.save`` of plain data, loadable with weights_only=True); a
        :class:`TextEncoder`'s tag cache goes next to it, see :func:`text_cache_path`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, "state": self.module.state_dict(),
                    "config": asdict(self.config), "text_encoder": self.text.identity,
                    "text_dim": self.text.dim, "code_dim": self.code_dim,
                    "image_model": self.image_model, "image_model_hash": self.image_model_hash,
                    "vocabulary": list(self.vocabulary), "losses": list(self.losses)}, path)
        if isinstance(self.text, TextEncoder):
            self.text.save_cache(text_cache_path(path))
        return path

    @classmethod
    def load(cls, path: str | Path, text: TextSpace, code_dim: int | None = None,
             image_model_hash: str | None = None) -> TagHead:
        """Read a saved head for ``text``; another text encoder, or (when given) another code
        dimension or image model hash than the head was trained with, is an error."""
        saved = _read_head_file(Path(path))
        if saved["text_encoder"] != text.identity or saved["text_dim"] != text.dim:
            raise TaggingError(f"{path}: head trained for text encoder {saved['text_encoder']} "
                               f"({saved['text_dim']}-d), not {text.identity} ({text.dim}-d)")
        if code_dim is not None and code_dim != saved["code_dim"]:
            raise TaggingError(f"{path}: head takes {saved['code_dim']}-d codes of "
                               f"{saved['image_model']!r}, not {code_dim}-d ones")
        if image_model_hash is not None and image_model_hash != saved["image_model_hash"]:
            raise TaggingError(f"{path}: head trained on image model {saved['image_model']!r} "
                               f"hash {saved['image_model_hash']}, not {image_model_hash}")
        config = HeadConfig.from_dict(saved["config"])
        module = AlignmentHead(saved["code_dim"], saved["text_dim"], config.hidden)
        module.load_state_dict(saved["state"])
        cache = text_cache_path(Path(path))
        if isinstance(text, TextEncoder) and cache.is_file():
            text.load_cache(cache)
        return cls(module, config, text, list(saved["vocabulary"]), saved["code_dim"],
                   saved["image_model"], saved["image_model_hash"], list(saved["losses"]))


def text_cache_path(head_path: Path) -> Path:
    """Where a head's tag embedding cache lives: ``<head>.tags.npz`` beside it."""
    return head_path.with_suffix(".tags.npz")


def _read_head_file(path: Path) -> dict:
    if not path.is_file():
        raise TaggingError(f"tag head file not found: {path}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise TaggingError(f"{path}: not a tag head file ({exc})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise TaggingError(f"{path}: not a tag head file (format {FORMAT} expected)")
    return saved


@contextmanager
def _single_thread() -> Iterator[None]:
    """The head's matrices are tiny: thread synchronisation costs more than it saves (on a
    busy 2-core machine, 40x more), and one thread keeps the float reductions in one order."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_head(codes: np.ndarray, tag_rows: Sequence[Sequence[str]], text: TextSpace,
               config: HeadConfig | None = None, image_model: str = "",
               image_model_hash: str = "", source: str = "tags") -> TagHead:
    """Train a head on frozen ``codes`` (images, D) and their tag lists (checked, errors
    naming ``source`` and the row); seeded and deterministic on a given machine."""
    config = config or HeadConfig()
    x = _check_codes(codes, None, "")
    rows = validate_tag_rows(tag_rows, source)
    if len(rows) != len(x):
        raise TaggingError(f"{source}: {len(rows)} tag rows for {len(x)} codes")
    vocabulary = build_vocabulary(rows)
    positives = torch.from_numpy(truth_matrix(rows, vocabulary, source)).float()
    tag_embeddings = torch.from_numpy(np.asarray(text.embed(vocabulary), dtype=np.float32))
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching global RNG
        torch.manual_seed(config.seed)
        module = AlignmentHead(x.shape[1], text.dim, config.hidden)
    generator = torch.Generator().manual_seed(config.seed)
    with _single_thread():
        losses = _fit(module, x, positives, tag_embeddings, config, generator)
    return TagHead(module, config, text, vocabulary, x.shape[1], image_model,
                   image_model_hash, losses)


def _fit(module: AlignmentHead, x: torch.Tensor, positives: torch.Tensor,
         tag_embeddings: torch.Tensor, config: HeadConfig,
         generator: torch.Generator) -> list[float]:
    """AdamW over shuffled mini-batches; returns the mean loss of each epoch."""
    optimiser = torch.optim.AdamW(module.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    losses = []
    for _ in range(config.epochs):
        total = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
            loss = contrastive_loss(module(x[batch]), tag_embeddings, positives[batch], config)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(x))
    return losses
