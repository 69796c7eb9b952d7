"""The paired two-way bootstrap of a difference in mAP (evaluation/bootstrap.py)."""
import numpy as np
import pytest
import torch

from evaluation.bootstrap import draw_counts, paired_difference
from evaluation.embed import SplitEmbeddings
from evaluation.report import differences_markdown
from evaluation.scoring import Rankings, split_differences


def crossed_split(n_styles: int, n_contents: int, per_style: int, rng: np.random.Generator):
    """Queries of a test split: each style stylizes ``per_style`` of the contents."""
    styles, contents = [], []
    for s in range(n_styles):
        for c in rng.choice(n_contents, size=per_style, replace=False):
            styles.append(f"s{s}")
            contents.append(f"c{c}")
    return np.array(styles), np.array(contents)


def test_identical_models_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    styles, contents = crossed_split(6, 10, 4, rng)
    ap = rng.uniform(size=len(styles))
    diff = paired_difference(ap, ap, styles, contents, resamples=200)
    assert (diff.value, diff.low, diff.high) == (0.0, 0.0, 0.0)
    assert not diff.settled


def test_a_constant_lead_is_the_same_in_every_draw_and_settled():
    rng = np.random.default_rng(1)
    styles, contents = crossed_split(5, 8, 3, rng)
    ap = rng.uniform(0.0, 0.9, size=len(styles))
    diff = paired_difference(ap + 0.05, ap, styles, contents, resamples=100)
    assert diff.value == pytest.approx(5.0) and diff.low == pytest.approx(5.0)
    assert diff.high == pytest.approx(5.0) and diff.settled and diff.resamples == 100


def test_one_draw_equals_the_mean_over_the_queries_it_repeats():
    """Brute force: rebuild a draw's query list (each query repeated as often as its style was
    drawn times its content) and take the plain mean of the differences."""
    rng = np.random.default_rng(2)
    styles, contents = crossed_split(7, 9, 3, rng)
    ap_a, ap_b = rng.uniform(size=len(styles)), rng.uniform(size=len(styles))
    for seed in range(5):
        draws = np.random.default_rng(seed)
        style_names, content_names = np.unique(styles), np.unique(contents)
        style_count = dict(zip(style_names, draw_counts(draws, len(style_names), 1)[0]))
        content_count = dict(zip(content_names, draw_counts(draws, len(content_names), 1)[0]))
        repeated = [a - b for a, b, s, c in zip(ap_a, ap_b, styles, contents)
                    for _ in range(style_count[s] * content_count[c])]
        diff = paired_difference(ap_a, ap_b, styles, contents, resamples=1, seed=seed)
        if repeated:
            assert diff.low == pytest.approx(100.0 * np.mean(repeated)) == diff.high
        else:   # the draw missed every query: it is left out
            assert diff.resamples == 0
        assert diff.value == pytest.approx(100.0 * np.mean(ap_a - ap_b))


def test_queries_without_a_relevant_item_are_left_out():
    styles, contents = np.array(["a", "a", "b", "b"]), np.array(["x", "y", "x", "y"])
    ap_a = np.array([0.5, np.nan, 0.7, 0.9])
    ap_b = np.array([0.4, np.nan, 0.6, 0.8])
    diff = paired_difference(ap_a, ap_b, styles, contents, resamples=50)
    assert diff.value == pytest.approx(10.0) and diff.low == pytest.approx(10.0)


def _simulated_split(rng: np.random.Generator):
    """Per-query differences of two models with no true difference, but style and content
    effects shared by a style's (or a content's) queries, as in a real test split."""
    styles, contents = crossed_split(20, 40, 5, rng)
    style_effect = dict(zip(np.unique(styles), rng.normal(0.0, 0.08, 20)))
    content_effect = dict(zip(np.unique(contents), rng.normal(0.0, 0.08, 40)))
    delta = (np.array([style_effect[s] for s in styles]) + np.array([content_effect[c] for c in contents])
             + rng.normal(0.0, 0.03, len(styles)))
    ap_b = rng.uniform(0.2, 0.6, len(styles))
    return ap_b + delta, ap_b, styles, contents


def test_intervals_cover_a_null_difference_where_a_query_bootstrap_does_not():
    """Over many splits drawn with no true difference, the 95% intervals hold 0 about 95% of the
    time; treating the queries as independent (a bootstrap over queries alone) holds it far less
    often, because a style's (or content's) queries move together."""
    rng = np.random.default_rng(3)
    covered = naive_covered = 0
    trials = 120
    for trial in range(trials):
        ap_a, ap_b, styles, contents = _simulated_split(rng)
        diff = paired_difference(ap_a, ap_b, styles, contents, resamples=400, seed=trial)
        covered += diff.low <= 0.0 <= diff.high
        # every query its own group, no crossed factor: the queries resampled alone
        naive = paired_difference(ap_a, ap_b, np.arange(len(styles)), resamples=400, seed=trial)
        naive_covered += naive.low <= 0.0 <= naive.high
    assert covered / trials >= 0.85     # 114 of 120 when written
    assert naive_covered / trials <= 0.7   # 76 of 120


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="every query needs"):
        paired_difference(np.zeros(3), np.zeros(2), ["a"] * 3, ["x"] * 3)
    with pytest.raises(ValueError, match="no query has a relevant item"):
        paired_difference(np.full(2, np.nan), np.full(2, np.nan), ["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="level"):
        paired_difference(np.zeros(2), np.zeros(2), ["a", "b"], ["x", "y"], level=1.0)


def test_a_split_without_repeated_contents_gets_style_differences_only():
    """Every content in one stylization: no content query has anything relevant, so the
    report gives the style difference and leaves content empty instead of failing."""
    rng = np.random.default_rng(4)
    styles = np.repeat([f"s{i}" for i in range(4)], 3)
    contents = np.array([f"c{i}" for i in range(12)])
    codes = {name: rng.normal(size=(12, 8)).astype(np.float32) for name in ("a", "b")}
    split = SplitEmbeddings("test-x", styles, contents, np.tile(np.arange(3), 4), np.unique(styles),
                            codes, {name: codes[name][::3] for name in codes})
    rankings = {name: Rankings(split, name, 64, torch.device("cpu")) for name in codes}
    differences = split_differences(rankings, "a", resamples=50, seed=0)
    assert list(differences) == ["b"] and list(differences["b"]) == ["style_map"]
    text = differences_markdown({"split": "test-x", "reference": "a", "resamples": 50,
                                 "models": differences})
    assert "| b | " in text[-2] and text[-2].endswith(" | – |")
