"""Zero-shot style tagging: metrics against brute force, tag validation, the head.

The head is trained on a synthetic world where tags are a function of the code, with a fixed
table of text vectors standing in for the text encoder (tests/test_tagging_text.py covers the
real loader). One tag is held out of training; its text vector is close to a training tag's.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from tagging import (HeadConfig, TagHead, TaggingError, build_vocabulary, load_scores,
                     metrics_from_file, save_scores, tag_metrics, train_head, truth_matrix,
                     unseen_mask, validate_tag_rows)
from tagging import metrics as metrics_module
from tagging.metrics import (average_precision, expected_random_ap, expected_random_recall,
                             recall_at_k)


# --------------------------------------------------------------------------- brute force

def _tie_groups(scores: np.ndarray, relevant: np.ndarray) -> list[tuple[int, int]]:
    """(items, relevant items) per group of equal scores, best group first."""
    groups: dict[float, list[int]] = {}
    for score, rel in zip(scores, relevant):
        groups.setdefault(float(score), []).append(int(rel))
    return [(len(groups[s]), sum(groups[s])) for s in sorted(groups, reverse=True)]


def brute_ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Walk the ranking group by group: every relevant item of a tie group gets the precision
    at the group's end (scikit-learn's rule)."""
    total = relevant.sum()
    if total == 0:
        return float("nan")
    seen = hits = 0
    ap = 0.0
    for size, rel in _tie_groups(scores, relevant):
        seen, hits = seen + size, hits + rel
        ap += rel * hits / seen
    return ap / total


def brute_recall(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Relevant items whose whole tie group ends within the top k, over all relevant items."""
    total = relevant.sum()
    if total == 0:
        return float("nan")
    seen = found = 0
    for size, rel in _tie_groups(scores, relevant):
        seen += size
        found += rel if seen <= k else 0
    return found / total


def tied_problem(seed: int, rows: int = 40, cols: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a coarse grid (many ties), sparse truth with some empty rows."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(rows, cols)).astype(np.float64) / 4
    truth = rng.random((rows, cols)) < 0.25
    truth[:3] = False
    return scores, truth


# --------------------------------------------------------------------------- metrics

def test_average_precision_worked_example():
    # Relevant items at a 2-way tie (ranks 2-3) and last: (1/3 + 2/4) / 2.
    scores = np.array([[0.9, 0.5, 0.5, 0.1]])
    truth = np.array([[False, True, False, True]])
    assert average_precision(scores, truth)[0] == pytest.approx((1 / 3 + 2 / 4) / 2)
    # Pessimistic ties: the relevant item tied with an irrelevant one is not in the top 2.
    assert recall_at_k(scores, truth, 2)[0] == 0.0
    assert recall_at_k(scores, truth, 3)[0] == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_brute_force_with_ties(seed, monkeypatch):
    monkeypatch.setattr(metrics_module, "CHUNK_ROWS", 7)  # several chunks, a ragged last one
    scores, truth = tied_problem(seed)
    ap = average_precision(scores, truth)
    np.testing.assert_allclose(ap, [brute_ap(s, t) for s, t in zip(scores, truth)])
    for k in (1, 3, 7):
        np.testing.assert_allclose(recall_at_k(scores, truth, k),
                                   [brute_recall(s, t, k) for s, t in zip(scores, truth)])
    assert np.isnan(ap[:3]).all()


def test_chance_levels_are_exact_expectations():
    # Every ranking of 6 items once, as rows: the mean over rows is the exact expectation.
    n = 6
    rankings = np.array(list(itertools.permutations(range(n))), dtype=float)
    for relevant in range(1, n + 1):
        truth = np.broadcast_to(np.arange(n) < relevant, rankings.shape).copy()
        assert expected_random_ap(n, np.array([relevant]))[0] == pytest.approx(
            average_precision(rankings, truth).mean())
        for k in (1, 2, 5):
            assert expected_random_recall(n, k) == pytest.approx(
                recall_at_k(rankings, truth, k).mean())
    assert expected_random_ap(1, np.array([1]))[0] == 1.0


def test_tag_metrics_directions_zero_shot_and_chance():
    scores, truth = tied_problem(3, rows=30, cols=9)
    zero_shot = np.zeros(9, bool)
    zero_shot[[2, 5]] = True
    out = tag_metrics(scores, truth, ks=(2,), zero_shot=zero_shot)
    answerable = truth.any(1)
    assert out["tag_queries"] == answerable.sum()
    assert out["tag_map"] == pytest.approx(100 * np.nanmean(average_precision(scores, truth)))
    assert out["tag_map_chance"] == pytest.approx(
        100 * expected_random_ap(9, truth.sum(1)[answerable]).mean())
    assert out["tag_recall@2_chance"] == pytest.approx(100 * 2 / 9)
    # Text -> image: each tag ranks the images.
    column_ap = [brute_ap(scores[:, j], truth[:, j]) for j in range(9)]
    assert out["text_to_image_map"] == pytest.approx(100 * np.nanmean(column_ap))
    # Zero-shot: only tags 2 and 5 relevant, ranked among all 9 tags.
    restricted = truth & zero_shot
    row_ap = [brute_ap(s, t) for s, t in zip(scores, restricted)]
    assert out["zero_shot_tag_map"] == pytest.approx(100 * np.nanmean(row_ap))
    assert out["zero_shot_tag_queries"] == restricted.any(1).sum()
    assert out["zero_shot_text_to_image_map"] == pytest.approx(
        100 * np.nanmean([column_ap[2], column_ap[5]]))
    assert out["zero_shot_text_to_image_queries"] == 2


@pytest.mark.parametrize("scores, truth, message", [
    (np.zeros((2, 3)), np.zeros((2, 4), bool), "one shape"),
    (np.zeros((2, 3)), np.zeros((2, 3), int), "boolean"),
    (np.array([[0.0, np.nan]]), np.array([[True, False]]), "finite"),
])
def test_metrics_reject_bad_input(scores, truth, message):
    with pytest.raises(TaggingError, match=message):
        tag_metrics(scores, truth)


def test_score_file_round_trip(tmp_path: Path):
    scores, truth = tied_problem(4, rows=6, cols=5)
    scores = scores.astype(np.float32)
    zero_shot = np.array([False, False, True, False, False])
    ids, vocab = [f"s{i}" for i in range(6)], ["oil", "ink", "pixel art", "gouache", "chalk"]
    path = save_scores(tmp_path / "nst", ids, vocab, scores, truth, zero_shot)
    assert path == tmp_path / "nst" and path.is_file()  # no suffix appended behind our back
    saved = load_scores(path)
    assert saved.image_ids == ids and saved.vocabulary == vocab
    np.testing.assert_array_equal(saved.scores, scores)
    np.testing.assert_array_equal(saved.truth, truth)
    assert metrics_from_file(path, ks=(1, 2)) == tag_metrics(scores, truth, (1, 2), zero_shot)
    with pytest.raises(TaggingError, match="match"):
        save_scores(tmp_path / "bad.npz", ids[:5], vocab, scores, truth)
    (tmp_path / "junk.npz").write_text("not numpy")
    with pytest.raises(TaggingError, match="junk.npz"):
        load_scores(tmp_path / "junk.npz")


# --------------------------------------------------------------------------- tags

@pytest.mark.parametrize("row, message", [
    ("watercolor", "single string"),
    ([], "empty tag list"),
    (["oil", 3], "int"),
    (["oil", "  "], "empty tag"),
    (None, "NoneType"),
])
def test_bad_tag_rows_name_source_and_row(row, message):
    with pytest.raises(TaggingError, match=message) as info:
        validate_tag_rows([["oil"], row], source="styles.parquet", row_ids=["s0", "s1"])
    assert "styles.parquet, row 1 (s1)" in str(info.value)


def test_tag_rows_vocabulary_and_truth():
    rows = validate_tag_rows([[" oil ", "ink", "oil"], np.array(["ink"]), ("chalk",)])
    assert rows == [["oil", "ink"], ["ink"], ["chalk"]]
    vocab = build_vocabulary(rows)
    assert vocab == ["chalk", "ink", "oil"]
    np.testing.assert_array_equal(truth_matrix(rows, vocab),
                                  [[False, True, True], [False, True, False], [True, False, False]])
    with pytest.raises(TaggingError, match="'chalk' is not in the vocabulary"):
        truth_matrix(rows, ["ink", "oil"], source="test set")
    np.testing.assert_array_equal(unseen_mask(vocab, ["ink"]), [True, False, True])


# --------------------------------------------------------------------------- head

class TableText:
    """A text encoder stand-in: a fixed vector per text."""

    def __init__(self, vectors: dict[str, np.ndarray], identity: str = "table@0001") -> None:
        self.vectors, self.identity = vectors, identity
        self.dim = len(next(iter(vectors.values())))

    def embed(self, texts):
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


SYNONYM = "tag0 synonym"


@pytest.fixture(scope="module")
def world() -> dict:
    """700 unit codes (100-d); each image's tags are the 2 of 10 tag directions its code is
    most aligned with. The held-out synonym of tag0 has a text vector close to tag0's and the
    same images."""
    rng = np.random.default_rng(0)
    tags = [f"tag{i}" for i in range(10)]
    text_vectors = _unit(rng.normal(size=(10, 32)))
    vectors = dict(zip(tags, text_vectors))
    vectors[SYNONYM] = _unit(text_vectors[0] + 0.3 * _unit(rng.normal(size=32)))
    codes = _unit(rng.normal(size=(700, 100))).astype(np.float32)
    directions = _unit(rng.normal(size=(10, 100)))
    best = np.argsort(-(codes @ directions.T), axis=1)[:, :2]
    rows = [[tags[j] for j in row] for row in best]
    text = TableText(vectors)
    head = train_head(codes[:500], rows[:500], text, HeadConfig(), image_model="nst",
                      image_model_hash="abc123")
    test_rows = [row + [SYNONYM] * ("tag0" in row) for row in rows[500:]]
    return {"codes": codes, "rows": rows, "text": text, "head": head,
            "test_codes": codes[500:], "test_rows": test_rows, "vocab": tags + [SYNONYM]}


def test_head_learns_tags_and_a_held_out_synonym(world):
    head = world["head"]
    assert head.vocabulary == [f"tag{i}" for i in range(10)]  # the synonym was never trained on
    assert head.losses[-1] < 0.6 * head.losses[0]
    vocab = world["vocab"]
    truth = truth_matrix(world["test_rows"], vocab)
    out = tag_metrics(head.score(world["test_codes"], vocab), truth, ks=(2,),
                      zero_shot=unseen_mask(vocab, head.vocabulary))
    assert out["tag_map"] > out["tag_map_chance"] + 30
    assert out["tag_recall@2"] > out["tag_recall@2_chance"] + 30
    assert out["text_to_image_map"] > out["text_to_image_map_chance"] + 30
    # Zero-shot: the synonym finds tag0's images, and ranks high for them.
    assert out["zero_shot_text_to_image_map"] > out["zero_shot_text_to_image_map_chance"] + 25
    assert out["zero_shot_tag_map"] > out["zero_shot_tag_map_chance"] + 10


def test_head_top_tags_and_search(world):
    head, codes = world["head"], world["test_codes"]
    top = head.top_tags(codes[:3], world["vocab"], k=2)
    assert [len(t) for t in top] == [2, 2, 2]
    found = head.search("tag3", codes, k=20)
    with_tag3 = [i for i, row in enumerate(world["test_rows"]) if "tag3" in row]
    assert len(set(found) & set(with_tag3)) >= 15


def test_head_training_is_seeded_and_deterministic(world):
    codes, rows, text = world["codes"][:200], world["rows"][:200], world["text"]
    state = torch.get_rng_state()
    first = train_head(codes, rows, text, HeadConfig(epochs=3, hidden=16, seed=7))
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    again = train_head(codes, rows, text, HeadConfig(epochs=3, hidden=16, seed=7))
    other = train_head(codes, rows, text, HeadConfig(epochs=3, hidden=16, seed=8))
    assert first.losses == again.losses
    np.testing.assert_array_equal(first.score(codes), again.score(codes))
    assert not np.array_equal(first.score(codes), other.score(codes))


@pytest.mark.parametrize("hidden", [0, 16])
def test_head_save_load_round_trip(world, tmp_path: Path, hidden):
    codes, rows, text = world["codes"][:200], world["rows"][:200], world["text"]
    head = train_head(codes, rows, text, HeadConfig(epochs=2, hidden=hidden),
                      image_model="nst", image_model_hash="abc123")
    path = head.save(tmp_path / "head.pt")
    loaded = TagHead.load(path, text, code_dim=100, image_model_hash="abc123")
    np.testing.assert_array_equal(loaded.score(codes, world["vocab"]),
                                  head.score(codes, world["vocab"]))
    assert (loaded.vocabulary, loaded.losses, loaded.config) == (head.vocabulary, head.losses,
                                                                 head.config)
    assert (loaded.image_model, loaded.image_model_hash) == ("nst", "abc123")


def test_head_mismatches_are_clear_errors(world, tmp_path: Path):
    head, text = world["head"], world["text"]
    path = head.save(tmp_path / "head.pt")
    other_text = TableText(text.vectors, identity="other-encoder@ffff")
    with pytest.raises(TaggingError, match="table@0001.*other-encoder@ffff"):
        TagHead.load(path, other_text)
    with pytest.raises(TaggingError, match="100-d codes of 'nst', not 64-d"):
        TagHead.load(path, text, code_dim=64)
    with pytest.raises(TaggingError, match="hash abc123, not zzz"):
        TagHead.load(path, text, image_model_hash="zzz")
    with pytest.raises(TaggingError, match="dimension 64 but this head takes 100-d"):
        head.score(np.ones((2, 64), np.float32))
    with pytest.raises(TaggingError, match="not found"):
        TagHead.load(tmp_path / "missing.pt", text)
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(TaggingError, match="not a tag head file"):
        TagHead.load(tmp_path / "other.pt", text)


def test_head_training_input_errors(world):
    codes, text = world["codes"][:3], world["text"]
    with pytest.raises(TaggingError, match="manifest.parquet: 2 tag rows for 3 codes"):
        train_head(codes, [["tag0"], ["tag1"]], text, source="manifest.parquet")
    with pytest.raises(TaggingError, match="manifest.parquet, row 2: .*single string"):
        train_head(codes, [["tag0"], ["tag1"], "tag2"], text, source="manifest.parquet")
    with pytest.raises(TaggingError, match=r"unknown tag head setting\(s\) \['epoch'\]"):
        HeadConfig.from_dict({"epoch": 3})
    with pytest.raises(TaggingError, match="out of range"):
        HeadConfig.from_dict({"temperature": 0.0})
