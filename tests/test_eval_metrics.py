"""Retrieval metrics against a plain per-query reference, hand-made rankings and a hand-built
split with known style and content answers."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from crowded_codes import crowded_codes, each_chunk_size_and_thread_count
from evaluation import metrics
from evaluation.embed import SplitEmbeddings
from evaluation.metrics import Ranking, nearest_neighbours, rank_queries
from evaluation.scoring import CROPS, TEST, score_split


def reference_ranking(queries, query_labels, gallery=None, gallery_labels=None):
    """Per-query loops in the manner of scikit-learn's average_precision_score: sort the
    gallery by score, walk the distinct score thresholds, sum recall steps x precision."""
    same_set = gallery is None
    if same_set:
        gallery, gallery_labels = queries, query_labels
    aps, first_hits = [], []
    for q, query in enumerate(queries):
        keep = [j for j in range(len(gallery)) if not (same_set and j == q)]
        scores = np.array([float(gallery[j] @ query) for j in keep])
        relevant = np.array([gallery_labels[j] == query_labels[q] for j in keep])
        if not relevant.any():
            aps.append(np.nan)
            first_hits.append(0)
            continue
        order = np.argsort(-scores, kind="stable")
        ap, seen, true_seen, previous_recall = 0.0, 0, 0, 0.0
        for threshold in sorted(set(scores.tolist()), reverse=True):
            at = scores[order] == threshold
            seen += int(at.sum())
            true_seen += int(relevant[order][at].sum())
            recall = true_seen / relevant.sum()
            ap += (recall - previous_recall) * true_seen / seen
            previous_recall = recall
        best = scores[relevant].max()
        aps.append(ap)
        first_hits.append(int(((scores >= best) & ~relevant).sum()) + 1)
    return np.array(aps), np.array(first_hits)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_matches_reference_on_random_embeddings(chunk_size):
    rng = np.random.default_rng(chunk_size)
    embeddings = rng.normal(size=(150, 6))
    labels = rng.integers(0, 25, size=150)
    ranking = rank_queries(embeddings, labels, chunk_size=chunk_size, device="cpu")
    expected_ap, expected_first = reference_ranking(embeddings, labels)
    assert np.isnan(ranking.ap).tolist() == np.isnan(expected_ap).tolist()
    assert np.nanmax(np.abs(ranking.ap - expected_ap)) < 1e-6
    assert (ranking.first_hit == expected_first).all()
    assert ranking.mean_ap() == pytest.approx(100 * np.nanmean(expected_ap), abs=1e-6)


@pytest.mark.parametrize("chunk_size", [3, 50])
def test_matches_reference_with_ties_and_a_separate_gallery(chunk_size):
    rng = np.random.default_rng(1)
    # Small integer vectors: many exactly equal scores.
    queries = rng.integers(-1, 2, size=(60, 3)).astype(np.float64)
    gallery = rng.integers(-1, 2, size=(40, 3)).astype(np.float64)
    query_labels, gallery_labels = rng.integers(0, 6, 60), rng.integers(0, 6, 40)
    expected_ap, expected_first = reference_ranking(queries, query_labels, gallery, gallery_labels)
    ranking = rank_queries(queries, query_labels, gallery, gallery_labels, chunk_size=chunk_size,
                           device="cpu")
    assert np.nanmax(np.abs(ranking.ap - expected_ap)) < 1e-6
    assert (ranking.first_hit == expected_first).all()
    # The rank-only path (IR-1) follows the same tie rule.
    rank_only = rank_queries(queries, query_labels, gallery, gallery_labels,
                             chunk_size=chunk_size, device="cpu", with_ap=False)
    assert (rank_only.first_hit == expected_first).all() and np.isnan(rank_only.ap).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_with_uneven_groups_across_chunks(dtype):
    rng = np.random.default_rng(7)
    # Groups of 1 (nothing relevant) to 12 members, in chunks of mixed widths; small integer
    # vectors tie often, within a chunk and across chunks.
    labels = rng.permutation(np.repeat(np.arange(40), rng.integers(1, 13, 40)))
    embeddings = rng.integers(-1, 2, size=(len(labels), 3)).astype(dtype)
    expected_ap, expected_first = reference_ranking(embeddings, labels)
    aps = []
    for chunk_size in (1, 5, 64, len(labels)):
        ranking = rank_queries(embeddings, labels, chunk_size=chunk_size, device="cpu")
        assert np.isnan(ranking.ap).tolist() == np.isnan(expected_ap).tolist()
        assert np.nanmax(np.abs(ranking.ap - expected_ap)) < 1e-9
        assert (ranking.first_hit == expected_first).all()
        rank_only = rank_queries(embeddings, labels, chunk_size=chunk_size, device="cpu", with_ap=False)
        assert (rank_only.first_hit == expected_first).all()
        aps.append(ranking.ap)
    # A query's AP does not depend on the chunk it falls in, to the last bit.
    assert all(np.array_equal(aps[0], other, equal_nan=True) for other in aps[1:])


def test_crowded_cosines_rank_alike_whatever_the_chunk_and_threads():
    """Codes whose cosines crowd within a float32 step rank the same with any chunk size and
    thread count, and as the float64 reference does: a float32 product rounded them
    differently per kernel and moved the report's mAP between two processes."""
    rng = np.random.default_rng(3)
    codes, labels = crowded_codes(rng, 60), rng.integers(0, 12, size=60)
    expected_ap, expected_first = reference_ranking(codes.astype(np.float64), labels)
    for chunk_size, threads in each_chunk_size_and_thread_count():
        ranking = rank_queries(codes, labels, chunk_size=chunk_size, device="cpu")
        assert np.nanmax(np.abs(ranking.ap - expected_ap)) < 1e-12, (chunk_size, threads)
        assert (ranking.first_hit == expected_first).all(), (chunk_size, threads)


def _count_problem(width):
    """Score rows with many ties and -inf, thresholds drawn from the rows, plus -inf, +inf and
    an all-equal row (every comparison holds: the fullest possible byte sums)."""
    rng = np.random.default_rng(width)
    scores = rng.integers(-3, 4, size=(9, width)).astype(np.float32)
    scores[1, ::3] = -np.inf
    scores[2] = 0.0
    picks = rng.integers(0, width, size=(9, 4))
    thresholds = np.concatenate([np.take_along_axis(scores, picks, 1),
                                 np.full((9, 1), -np.inf), np.full((9, 1), np.inf)], axis=1)
    thresholds[2] = 0.0
    expected = (scores[:, None, :] >= thresholds[:, :, None]).sum(2)
    return scores, thresholds, expected


@pytest.mark.parametrize("width", [1, 13, 2040, 2041, 5000])
@pytest.mark.parametrize("block_bytes", [1, 1 << 20])
def test_counts_at_least_match_brute_force(width, block_bytes, monkeypatch):
    # block_bytes 1: one row per block; the default: all rows in one.
    monkeypatch.setattr(metrics, "_CPU_BLOCK", block_bytes)
    scores, thresholds, expected = _count_problem(width)
    assert (metrics._count_at_least_cpu(scores, thresholds) == expected).all()
    assert (metrics._count_at_least(torch.from_numpy(scores), torch.from_numpy(thresholds)).numpy()
            == expected).all()


@pytest.mark.parametrize("width", [1, 2041])
def test_accelerator_counts_match_brute_force(width):
    # The torch path that accelerators take, run here on CPU tensors.
    scores, thresholds, expected = _count_problem(width)
    counts = metrics._count_at_least_torch(torch.from_numpy(scores), torch.from_numpy(thresholds))
    assert (counts.numpy() == expected).all()


def _one_query(gallery_scores, gallery_relevant):
    """A query whose gallery scores are given directly (1-d embeddings, query = [1])."""
    gallery = np.array(gallery_scores, dtype=np.float64)[:, None]
    labels = ["a" if rel else f"x{i}" for i, rel in enumerate(gallery_relevant)]
    return rank_queries(np.ones((1, 1)), ["a"], gallery, labels, device="cpu")


def test_perfect_ranking_is_100():
    ranking = _one_query([0.9, 0.8, 0.3, 0.1], [True, True, False, False])
    assert ranking.mean_ap() == pytest.approx(100.0)
    assert ranking.recall(1) == 100.0


def test_reversed_ranking():
    ranking = _one_query([0.9, 0.8, 0.3, 0.1], [False, False, True, True])
    assert ranking.mean_ap() == pytest.approx(100 * (1 / 3 + 2 / 4) / 2)
    assert ranking.first_hit.tolist() == [3]
    assert ranking.recall(1) == 0.0 and ranking.recall(3) == 100.0


def test_ties_are_pessimistic():
    # A relevant item tied with two irrelevant ones shares their precision: 1/3, not 1.
    ranking = _one_query([0.5, 0.5, 0.5, 0.1], [True, False, False, True])
    assert ranking.mean_ap() == pytest.approx(100 * (1 / 3 + 2 / 4) / 2)
    assert ranking.recall(1) == 0.0
    # Relevant items tied with each other at the top are a perfect ranking.
    ranking = _one_query([0.9, 0.9, 0.1], [True, True, False])
    assert ranking.mean_ap() == pytest.approx(100.0) and ranking.recall(1) == 100.0


def test_query_is_not_its_own_match_and_unanswerable_queries_are_skipped():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    ranking = rank_queries(embeddings, ["a", "a", "b"], device="cpu")
    assert np.isnan(ranking.ap[2]) and ranking.first_hit[2] == 0
    assert ranking.mean_ap() == pytest.approx(100.0)   # over the two answerable queries
    assert ranking.recall(1) == 100.0


def test_labels_are_equal_when_their_text_is():
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0]])
    gallery = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1]])
    as_text = rank_queries(embeddings, ["1", "2"], gallery, ["2", "1", "1"], device="cpu")
    mixed = rank_queries(embeddings, np.array([1, 2]), gallery, ["2", "1", "1"], device="cpu")
    as_integers = rank_queries(embeddings, np.array([1, 2]), gallery, np.array([2, 1, 1]), device="cpu")
    for ranking in (as_text, mixed, as_integers):
        assert ranking.mean_ap() == pytest.approx(100.0) and ranking.first_hit.tolist() == [1, 1]


def test_empty_inputs_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        rank_queries(np.zeros((0, 4)), [], device="cpu")


def _hand_split() -> SplitEmbeddings:
    # Dimensions 0/1 carry style A/B, 2/3 carry content x/y (weakly).
    images = np.array([[1, 0, 0.1, 0], [1, 0, 0, 0.1], [0, 1, 0.1, 0], [0, 1, 0, 0.1]])
    references = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    # Content x's source image also looks a bit like style A, so image 1 (A, content y) is
    # nearer to x than to its own content y: one content IR-1 miss out of four.
    contents = np.array([[0.5, 0, 1, 0], [0, 0, 0, 1.0]])
    return SplitEmbeddings(
        split="test-hand", style_ids=np.array(["A", "A", "B", "B"]),
        content_ids=np.array(["x", "y", "x", "y"]), indices=np.arange(4),
        reference_ids=np.array(["A", "B"]), images={"m": images}, references={"m": references},
        content_gallery_ids=np.array(["x", "y"]), contents={"m": contents})


def test_split_scores_on_a_hand_built_split():
    scores = score_split(_hand_split(), "m", TEST, chunk_size=2, device="cpu")
    assert scores["style_map"] == pytest.approx(100.0)
    assert scores["style_ir1"] == pytest.approx(100.0)
    # Every image's same-content partner ranks second, behind its same-style partner.
    assert scores["content_map"] == pytest.approx(50.0)
    assert scores["content_ir1"] == pytest.approx(75.0)
    assert scores["style_recall1"] == scores["style_recall10"] == pytest.approx(100.0)


def test_crops_scores():
    split = _hand_split()
    # Crops relevance is the source image (style_ids); content plays no part.
    # Each crop has 1 relevant among 3 others: a random order's AP is H_3 / 3, its top-1 1/3.
    assert score_split(split, "m", CROPS, chunk_size=3, device="cpu") == {
        "map": pytest.approx(100.0), "top1": pytest.approx(100.0),
        "map_chance": pytest.approx(100 * (1 + 1 / 2 + 1 / 3) / 3), "top1_chance": pytest.approx(100 / 3)}


@pytest.mark.parametrize("n, r", [(5, 1), (6, 2), (7, 3), (4, 4)])
def test_chance_levels_equal_the_average_over_every_order(n, r):
    """The closed forms against all placements of r relevant items among n ranks."""
    placements = list(itertools.combinations(range(1, n + 1), r))
    aps = [np.mean([(i + 1) / rank for i, rank in enumerate(ranks)]) for ranks in placements]
    hits = {k: np.mean([ranks[0] <= k for ranks in placements]) for k in (1, 2, 3)}
    ranking = Ranking(ap=np.zeros(2), first_hit=np.ones(2, dtype=int), n_relevant=np.full(2, r),
                      gallery_size=n)
    assert ranking.chance_map() == pytest.approx(100 * np.mean(aps))
    for k, expected in hits.items():
        assert ranking.chance_recall(k) == pytest.approx(100 * expected)


def test_nearest_neighbours_skip_the_query():
    embeddings = np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0], [0.9, 0.1]])
    assert nearest_neighbours(embeddings, [0, 2], k=2).tolist() == [[3, 1], [1, 3]]
