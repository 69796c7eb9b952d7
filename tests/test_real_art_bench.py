"""The real-art benchmark's summary: per-seed and pooled numbers from report.json payloads, its
tables, and the missing-art-folder exit (the pipeline itself is not run here)."""
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_art.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("real_art_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    spec.loader.exec_module(module)   # as a script it puts the repo root first on sys.path
    sys.path[:] = saved
    return module


def _scores(map_: float, p1: float, hit10: float) -> dict:
    return {"map": map_, "map@1": p1, "p@1": p1, "recall@10": 50.0, "hit@1": p1, "hit@10": hit10}


def _held(style: float, content: float) -> dict:
    return {"test-whitening": {"style_map": style, "content_map": content, "style_ir1": 0.0},
            "test-magenta": {"style_map": 99.0, "content_map": 99.0}}


def _report(labelled: dict) -> dict:
    return {"models": {"nst": _held(60.0, 9.0), "magenta_style": _held(50.0, 11.0)},
            "chance": _held(4.0, 5.0),
            "meta": {"held_out": "test-whitening", "labelled": {"table": "labels.csv", **labelled}}}


@pytest.fixture
def reports() -> dict:
    # loo: 10 queries on seed 0, 30 on seed 1 (pooled differs from the mean); unseen: seed 0 only
    seed0 = _report({
        "loo": {"artist": {"queries": 10, "chance": _scores(6.0, 2.0, 20.0),
                           "nst": _scores(30.0, 20.0, 50.0), "magenta_style": _scores(18.0, 10.0, 40.0)}},
        "unseen": {"artist": {"queries": 12, "chance": _scores(6.0, 1.5, 18.0),
                              "nst": _scores(24.0, 25.0, 60.0),
                              "magenta_style": _scores(23.0, 25.0, 50.0)}}})
    seed1 = _report({
        "loo": {"artist": {"queries": 30, "chance": _scores(6.0, 2.0, 20.0),
                           "nst": _scores(10.0, 40.0, 70.0), "magenta_style": _scores(18.0, 10.0, 40.0),
                           "no_nst": _scores(22.0, 20.0, 60.0)}}})
    seed1["models"]["nst"] = _held(55.0, 8.0)
    seed1["meta"]["differences"] = {"split": "test-whitening", "reference": "nst", "resamples": 100,
                                    "models": {"magenta_style": {"style_map": [5.0, 1.0, 9.5],
                                                                 "content_map": [-3.0, -6.25, 0.5]}}}
    seed0["meta"]["labelled"]["differences"] = {
        "reference": "nst", "loo": {"artist": {"magenta_style": {"map": [12.0, 2.0, 20.0],
                                                                 "p@1": [10.0, -10.0, 30.0]}}}}
    return {0: seed0, 1: seed1}


def test_pooled_numbers_weight_seeds_by_their_queries(bench, reports):
    loo = bench.summarize(reports)["labelled"]["loo"]
    assert loo["queries"] == {0: 10, 1: 30} and loo["missing"] == []
    nst = loo["models"]["nst"]
    assert nst["map"]["seeds"] == {0: 30.0, 1: 10.0}
    assert nst["map"]["mean"] == pytest.approx(20.0)
    assert nst["map"]["pooled"] == pytest.approx((30.0 * 10 + 10.0 * 30) / 40)   # 15.0
    # P@1: 2 hits of 10 and 12 hits of 30 -> 14 / 40
    assert nst["p@1"]["mean"] == pytest.approx(30.0)
    assert nst["p@1"]["pooled"] == pytest.approx(100 * 14 / 40)
    assert nst["hit@10"]["pooled"] == pytest.approx((50.0 * 10 + 70.0 * 30) / 40)   # 65.0
    # a model of one seed only is pooled over that seed alone
    assert loo["models"]["no_nst"]["p@1"] == {"seeds": {1: 20.0}, "mean": 20.0, "pooled": 20.0}
    assert list(loo["models"]) == ["nst", "magenta_style", "no_nst", "chance"]


def test_a_protocol_missing_from_one_seed_uses_the_others(bench, reports):
    summary = bench.summarize(reports)
    assert set(summary["labelled"]) == {"loo", "unseen"}   # split and seen are in no report
    unseen = summary["labelled"]["unseen"]
    assert unseen["seeds"] == [0] and unseen["missing"] == [1] and unseen["queries"] == {0: 12}
    assert unseen["models"]["nst"]["map"] == {"seeds": {0: 24.0}, "mean": 24.0, "pooled": 24.0}
    table = bench.protocol_table("unseen", unseen, summary["seeds"])
    assert "| nst | 24.0 | - | 24.0 | 24.0 | 25.0 | - | 25.0 | 25.0 | 60.0 |" in table
    assert "s0 12 / s1 -" in table and "seed(s) 1" in table


def test_tables_show_per_seed_pooled_and_held_out(bench, reports):
    summary = bench.summarize(reports)
    held = summary["held_out"]
    assert held["splits"] == {0: "test-whitening", 1: "test-whitening"}
    assert held["models"]["nst"] == {"style_map": {0: 60.0, 1: 55.0}, "content_map": {0: 9.0, 1: 8.0}}
    assert held["models"]["chance"]["style_map"] == {0: 4.0, 1: 4.0}
    text = bench.render(summary)
    assert "| nst | 30.0 | 10.0 | 20.0 | 15.0 | 20.0 | 40.0 | 30.0 | 35.0 | 65.0 |" in text
    assert "| *chance* |" in text and "s0 10 / s1 30 (pooled: 40)" in text
    assert "| nst | 60.0 | 55.0 | 9.00 | 8.00 |" in text
    assert "test-whitening" in text
    # the report's differences, per seed where a report has them
    differences = summary["differences"]
    assert differences["held_out"]["models"]["magenta_style"]["content_map"] == {1: [-3.0, -6.25, 0.5]}
    assert differences["held_out"]["references"] == {1: "nst"}
    assert differences["labelled"]["loo"]["models"]["magenta_style"]["p@1"] == {0: [10.0, -10.0, 30.0]}
    assert set(differences["labelled"]) == {"loo"}
    assert "### loo (artist): nst minus each model" in text
    assert "| magenta_style | +12.00 [+2.00, +20.00] | - | +10.00 [-10.00, +30.00] | - |" in text
    assert "### held-out split: nst minus each model" in text
    assert "| magenta_style | - | +5.00 [+1.00, +9.50] | - | -3.00 [-6.25, +0.50] |" in text


def test_missing_art_folder_exits_2(bench, tmp_path, capsys):
    out = tmp_path / "out"
    assert bench.main(["--out", str(out), "--art", str(tmp_path / "no-art"), "--seeds", "0"]) == 2
    assert "real-art folder not found" in capsys.readouterr().err
    assert not out.exists()   # nothing generated
