"""Fused models of an evaluation: two evaluated models' codes side by side (``eval.fused``).

A fused model needs no forward pass of its own: its codes are computed from the components'
codes already held per split (``models.fuse``: each code L2-normalised, weighted, concatenated,
re-normalised), so retrieval, crops and tagging score it exactly like any other model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from common.schema import Fused
from evaluation.embed import EvalError, SplitEmbeddings
from models.fuse import FusionError, fuse

KEY = "eval.fused"


@dataclass(frozen=True)
class FusedSpec:
    """One entry of ``eval.fused``: two evaluated models' names and weights."""

    models: tuple[str, str]
    weights: tuple[float, float] = (1.0, 1.0)

    @property
    def name(self) -> str:
        return "+".join(self.models)

    def codes(self, codes: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return fuse(codes[self.models[0]], codes[self.models[1]], *self.weights)
        except FusionError as exc:  # e.g. an all-zero code: say which pair met it
            raise EvalError(f"fused model {self.name}: {exc}") from None


def _entry(index: int, entry: Fused, evaluated: Sequence[str]) -> FusedSpec:
    """One ``eval.fused`` entry, its shape and weights checked by the schema
    (``common.schema.Fused``): here, whether its models are evaluated."""
    where, models = f"{KEY}[{index}]", entry.models
    missing = [m for m in models if m not in evaluated]
    if missing:
        raise EvalError(f"{where} fuses '{missing[0]}', which this evaluation does not run "
                        f"(models: {', '.join(evaluated)}): add it (--checkpoint "
                        f"{missing[0]}=PATH or eval.baselines) or change {KEY} ({KEY}=[] for none)")
    return FusedSpec((models[0], models[1]), (float(entry.weights[0]), float(entry.weights[1])))


def parse_fused(entries: Sequence[Fused], evaluated: Sequence[str]) -> list[FusedSpec]:
    """The fused models of ``eval.fused`` over the ``evaluated`` model names; any entry that
    cannot be computed is an error naming it, raised before any embedding work."""
    fused = [_entry(i, entry, evaluated) for i, entry in enumerate(entries)]
    names = [*evaluated, *(f.name for f in fused)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise EvalError(f"{KEY}: model names must be unique, '{repeated[0]}' is given twice")
    return fused


def add_fused(codes: dict[str, np.ndarray], fused: Sequence[FusedSpec]) -> dict[str, np.ndarray]:
    """``codes`` (model name -> codes of the same images) with the fused models' codes added."""
    return {**codes, **{f.name: f.codes(codes) for f in fused}}


def fuse_split(split: SplitEmbeddings, fused: Sequence[FusedSpec]) -> None:
    """Add the fused models to every set of codes a split holds (stylizations, references and
    content sources), so every metric scores them."""
    split.images = add_fused(split.images, fused)
    split.references = add_fused(split.references, fused)
    if split.contents:
        split.contents = add_fused(split.contents, fused)
