"""Which splits of a shards root are evaluated, and in which role.

Test splits are ``test-<method>``: those of ``stylize.train_methods`` are averaged in the
report, the one of ``stylize.held_out`` is shown apart, any other is shown but not averaged.
``crops`` (real images cut into grids) is evaluated when present.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.embed import EvalError
from pipeline.plan import CROPS as CROPS_SPLIT, TEST_PREFIX, test_split  # stage 1's split names
from shards.reader import list_splits


@dataclass
class SplitRoles:
    """Which test splits are averaged (training methods) and which is shown apart (held out)."""

    train: list[str]
    held_out: str | None
    other: list[str]

    def columns(self) -> list[str]:
        return self.train + self.other + ([self.held_out] if self.held_out else [])


def split_roles(shards: Path, cfg: dict) -> tuple[SplitRoles, bool]:
    """Test splits by role, and whether a crops split exists."""
    present = list_splits(shards)
    tests = [s for s in present if s.startswith(TEST_PREFIX)]
    if not tests:
        raise EvalError(f"{shards} holds no test-<method> splits (found: {present or 'nothing'}); "
                        "point --shards at the output folder of pipeline/stylize.py")
    train = [test_split(m) for m in cfg["stylize"]["train_methods"] if test_split(m) in tests]
    held_out = test_split(cfg["stylize"]["held_out"])
    held_out = held_out if held_out in tests else None
    other = [s for s in tests if s not in train and s != held_out]
    return SplitRoles(train=train, held_out=held_out, other=other), CROPS_SPLIT in present
