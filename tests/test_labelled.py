"""The labelled-retrieval protocol (evaluation/labelled.py): metrics against a plain brute-force
reference, chance levels against every permutation, the split and its file, the label table and
its errors, the report section."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score

from evaluation.bootstrap import interval_text, paired_difference
from crowded_codes import crowded_codes, each_chunk_size_and_thread_count
from evaluation.labelled import (LabelTableError, chance_levels, label_differences,
                                 markdown_section, nearest, query_database_split,
                                 read_label_table, read_split, retrieval_metrics, score_table,
                                 write_split)
from evaluation.metrics import rank_queries

KS = (1, 3, 10, 50)


# --- a plain reference: a full sort per query, explicit loops --------------------------------

def reference_metrics(codes, labels, queries, gallery, ks):
    """{query index: {metric: value}} for every query with a relevant gallery item."""
    out = {}
    for q in queries:
        items = [g for g in gallery if g != q]
        score = {g: float(np.dot(codes[q].astype(np.float64), codes[g].astype(np.float64)))
                 for g in items}
        relevant = {g: len(labels[q] & labels[g]) > 0 for g in items}
        r = sum(relevant.values())
        if r == 0:
            continue
        # Pessimistic order: by score, and within equal scores irrelevant items first.
        ranking = sorted(items, key=lambda g: (-score[g], relevant[g]))
        hits, found = [], 0
        for g in ranking:
            found += relevant[g]
            hits.append(found)
        precisions = []
        for g in items:
            if relevant[g]:
                above = [h for h in items if score[h] >= score[g]]
                precisions.append(sum(relevant[h] for h in above) / len(above))
        n = len(items)
        values = {"map": sum(precisions) / r, "p@1": float(relevant[ranking[0]])}
        for k in ks:
            top = min(k, n)
            values[f"map@{k}"] = sum(hits[i - 1] / i for i in range(1, top + 1)) / top
            values[f"recall@{k}"] = hits[top - 1] / r
            values[f"hit@{k}"] = float(hits[top - 1] > 0)
        out[q] = values
    return out


def assert_matches_reference(result, codes, labels, queries, gallery, ks=KS):
    expected = reference_metrics(codes, labels, queries, gallery, ks)
    assert result.query.tolist() == [q for q in queries if q in expected]
    assert result.left_out == len(queries) - len(expected)
    for key, values in result.values.items():
        want = [expected[q][key] for q in result.query.tolist()]
        np.testing.assert_allclose(values, want, rtol=0, atol=1e-12, err_msg=key)


def quantised_codes(rng, n, dim=4, levels=2):
    """Small integer codes: every dot product exact, many ties."""
    return rng.integers(-levels, levels + 1, size=(n, dim)).astype(np.float32)


def random_labels(rng, n, n_labels=5, multi=0.3, unlabelled=0.15):
    labels = []
    for _ in range(n):
        if rng.random() < unlabelled:
            labels.append(frozenset())
        else:
            size = 2 if rng.random() < multi else 1
            labels.append(frozenset(f"l{i}" for i in rng.choice(n_labels, size, replace=False)))
    return labels


@pytest.mark.parametrize("seed", range(4))
def test_loo_matches_brute_force_with_ties_multilabel_and_distractors(seed):
    rng = np.random.default_rng(seed)
    n = 40
    codes, labels = quantised_codes(rng, n), random_labels(rng, n)
    labels[0] = frozenset({"solo"})   # a label with one image: nothing to find, left out
    result = retrieval_metrics(codes, labels, ks=KS, chunk_size=7)
    labelled = [i for i in range(n) if labels[i]]
    assert_matches_reference(result, codes, labels, labelled, list(range(n)))
    assert 0 not in result.query and result.left_out >= 1


@pytest.mark.parametrize("seed", range(3))
def test_split_matches_brute_force(seed):
    rng = np.random.default_rng(10 + seed)
    n = 45
    codes, labels = quantised_codes(rng, n, levels=3), random_labels(rng, n)
    queries, gallery = query_database_split(labels, 0.3, seed)
    result = retrieval_metrics(codes, labels, queries, gallery, ks=KS, chunk_size=5)
    assert_matches_reference(result, codes, labels, queries.tolist(), gallery.tolist())
    assert (result.gallery_size == len(gallery)).all()   # disjoint: nothing to exclude


def test_overlapping_queries_and_gallery_exclude_the_query_itself():
    rng = np.random.default_rng(3)
    codes, labels = quantised_codes(rng, 30), random_labels(rng, 30, unlabelled=0.3)
    queries, gallery = np.arange(0, 20), np.arange(10, 30)
    result = retrieval_metrics(codes, labels, queries, gallery, ks=KS)
    assert_matches_reference(result, codes, labels, queries.tolist(), gallery.tolist())
    expected_sizes = [19 if q >= 10 else 20 for q in result.query.tolist()]
    assert result.gallery_size.tolist() == expected_sizes


def test_many_relevant_items_take_the_sorting_path():
    # Two labels over 400 images: ~200 relevant per query, above the direct-comparison width.
    rng = np.random.default_rng(5)
    codes = quantised_codes(rng, 400, dim=3, levels=2)
    labels = [frozenset({f"l{i % 2}"}) for i in range(400)]
    queries = np.arange(0, 400, 37)
    result = retrieval_metrics(codes, labels, queries, ks=(1, 10, 500))
    assert result.n_relevant.min() > 128
    assert_matches_reference(result, codes, labels, queries.tolist(), list(range(400)), ks=(1, 10, 500))


def test_ap_agrees_with_scikit_learn_and_metrics_py():
    rng = np.random.default_rng(7)
    codes = quantised_codes(rng, 60, dim=3)
    single = [frozenset({f"s{i % 6}"}) for i in range(60)]
    result = retrieval_metrics(codes, single, ks=(1, 10))
    scores = codes @ codes.T
    for row, q in enumerate(result.query.tolist()):
        others = [g for g in range(60) if g != q]
        truth = [single[g] == single[q] for g in others]
        assert result.values["map"][row] == pytest.approx(average_precision_score(truth, scores[q, others]))
    ranking = rank_queries(codes, [next(iter(s)) for s in single], device="cpu")
    summary, chance = result.summary(), result.chance()
    assert summary["map"] == pytest.approx(ranking.mean_ap())
    assert summary["hit@10"] == pytest.approx(ranking.recall(10))
    assert chance["map"] == pytest.approx(ranking.chance_map())
    assert chance["hit@10"] == pytest.approx(ranking.chance_recall(10))


def test_results_do_not_depend_on_chunking_or_code_dtype():
    rng = np.random.default_rng(11)
    codes, labels = quantised_codes(rng, 50), random_labels(rng, 50)
    one = retrieval_metrics(codes, labels, chunk_size=1)
    many = retrieval_metrics(codes.astype(np.float64), labels, chunk_size=1000)
    assert one.query.tolist() == many.query.tolist()
    for key in one.values:
        np.testing.assert_allclose(one.values[key], many.values[key], atol=1e-12)


def test_crowded_cosines_score_alike_whatever_the_chunk_and_threads():
    """The labelled ranking, like rank_queries, scores in float64: codes with cosines within a
    float32 step match the float64 reference for every chunk size and thread count."""
    rng = np.random.default_rng(5)
    codes, labels = crowded_codes(rng, 40), random_labels(rng, 40)
    labelled = [i for i in range(40) if labels[i]]
    for chunk_size, threads in each_chunk_size_and_thread_count():
        result = retrieval_metrics(codes, labels, ks=KS, chunk_size=chunk_size)
        assert_matches_reference(result, codes, labels, labelled, list(range(40)))


def test_perfect_codes_score_one_and_k_above_the_gallery_is_clamped():
    labels = [frozenset({f"l{i % 3}"}) for i in range(9)]
    codes = np.eye(3, dtype=np.float32)[[i % 3 for i in range(9)]]   # same label, same code
    result = retrieval_metrics(codes, labels, ks=(1, 2, 100))
    summary = result.summary()
    assert summary["map"] == summary["p@1"] == summary["hit@100"] == summary["recall@100"] == 100.0
    assert summary["map@2"] == 100.0 and summary["recall@2"] == 100.0
    # k' = 8 (the gallery): P(1..8) = 1, 1, 2/3, 2/4 ... 2/8 with the two relevant items first.
    assert summary["map@100"] == pytest.approx(100 * (2 + sum(2 / i for i in range(3, 9))) / 8)


# --- chance levels: the exact average over every order ---------------------------------------

def permutation_average(n, r, ks):
    totals, count = {}, 0
    for order in itertools.permutations(range(n)):
        relevant = [position < r for position in order]   # items 0..r-1 are the relevant ones
        hits = list(itertools.accumulate(relevant))
        values = {"map": sum(hits[i] / (i + 1) for i in range(n) if relevant[i]) / r,
                  "p@1": float(relevant[0])}
        for k in ks:
            top = min(k, n)
            values[f"map@{k}"] = sum(hits[i - 1] / i for i in range(1, top + 1)) / top
            values[f"recall@{k}"] = hits[top - 1] / r
            values[f"hit@{k}"] = float(hits[top - 1] > 0)
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value
        count += 1
    return {key: total / count for key, total in totals.items()}


@pytest.mark.parametrize("n", range(1, 8))
def test_chance_levels_equal_the_average_over_all_permutations(n):
    ks = (1, 2, 3, 10)
    for r in range(1, n + 1):
        expected = permutation_average(n, r, ks)
        got = chance_levels(n, r, ks)
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key], abs=1e-12), (n, r, key)


def test_result_chance_averages_each_querys_levels():
    rng = np.random.default_rng(2)
    codes, labels = quantised_codes(rng, 30), random_labels(rng, 30)
    result = retrieval_metrics(codes, labels, ks=(1, 10))
    chance = result.chance()
    levels = [chance_levels(int(n), int(r), (1, 10))
              for n, r in zip(result.gallery_size, result.n_relevant)]
    for key in chance:
        assert chance[key] == pytest.approx(100 * np.mean([level[key] for level in levels]))
    assert chance.keys() == result.summary().keys()


def test_per_label_and_nearest():
    labels = [frozenset({"a"}), frozenset({"a"}), frozenset({"b"}), frozenset({"b"}),
              frozenset({"a", "b"}), frozenset()]
    codes = np.array([[1, 0], [1, 0.1], [0, 1], [-1, 0], [0.7, 0.7], [0.9, -0.4]], dtype=np.float32)
    result = retrieval_metrics(codes, labels, ks=(1,))
    rows = result.per_label(labels)
    assert rows == sorted(rows, key=lambda row: (-row[2], row[0]))
    ap = dict(zip(result.query.tolist(), result.values["map"].tolist()))
    for label, count, value in rows:   # query 4 holds both labels: it counts for each
        mine = [ap[q] for q in ap if label in labels[q]]
        assert (count, value) == (len(mine), pytest.approx(100 * np.mean(mine)))
    assert {label: count for label, count, _ in rows} == {"a": 3, "b": 3}
    found = nearest(codes, [0, 3], k=10)
    scores = codes @ codes.T
    for row, q in enumerate([0, 3]):
        order = [g for g in np.argsort(-scores[q], kind="stable") if g != q]
        assert found[row].tolist() == order
    assert nearest(codes, [0], gallery=np.array([2, 3]), k=1).tolist() == [[2]]


# --- the split and its file ------------------------------------------------------------------

def split_labels():
    rng = np.random.default_rng(0)
    labels = [frozenset({f"artist{i}"}) for i in rng.integers(0, 12, 300)]
    labels += [frozenset()] * 20 + [frozenset({"alone"})]
    labels += [frozenset({"artist1", "artist2"})] * 10
    return labels


def test_split_is_reproducible_disjoint_covering_and_stratified():
    labels = split_labels()
    queries, database = query_database_split(labels, 0.25, seed=3)
    again = query_database_split(labels, 0.25, seed=3)
    assert queries.tolist() == again[0].tolist() and database.tolist() == again[1].tolist()
    assert queries.tolist() != query_database_split(labels, 0.25, seed=4)[0].tolist()
    assert not set(queries) & set(database)
    assert sorted(set(queries) | set(database)) == list(range(len(labels)))
    in_query = set(queries.tolist())
    for label in {label for s in labels for label in s}:
        rows = [i for i, s in enumerate(labels) if label in s]
        asked = sum(i in in_query for i in rows)
        assert asked < len(rows)   # at least one stays to be found
        assert asked <= math.ceil(0.25 * len(rows))   # never above its quota
        if len(rows) >= 20:
            assert asked >= 0.25 * len(rows) - 0.05 * len(rows) - 1, label
    assert not in_query & set(range(300, 321))   # unlabelled and one-image rows: database


def test_split_file_round_trip_and_mismatches(tmp_path):
    labels = split_labels()
    ids = [f"img{i}" for i in range(len(labels))]
    queries, database = query_database_split(labels, 0.2, seed=1)
    path = tmp_path / "split.csv"
    write_split(path, ids, queries, database)
    assert path.read_text().splitlines()[0] == "id,role"
    back = read_split(path, ids)
    assert back[0].tolist() == queries.tolist() and back[1].tolist() == database.tolist()
    with pytest.raises(LabelTableError, match=r"split\.csv, row 6, column 'id'.*'img5'"):
        read_split(path, ids[:5] + ["other"] + ids[6:])
    with pytest.raises(LabelTableError, match=r"split\.csv: 1 ids .*'extra'"):
        read_split(path, ids + ["extra"])
    with pytest.raises(ValueError, match="both a query and in the database"):
        write_split(path, ids, queries, np.arange(len(ids)))


# --- the label table ------------------------------------------------------------------------

def make_images(folder: Path, count: int) -> list[str]:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"img/p{i}.jpg"
        Image.new("RGB", (8, 8), (20 * i % 255, 40, 90)).save(folder / name, quality=80)
        names.append(name)
    return names


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_table_reads_multilabel_and_unlabelled_cells(tmp_path):
    names = make_images(tmp_path, 5)
    absolute = str(tmp_path / names[4])
    table = read_label_table(write_csv(tmp_path / "t.csv", [
        "path,artist,genre",
        f"{names[0]},Monet, landscape | portrait",
        f"{names[1]},Monet,landscape",
        f"{names[2]},,portrait",
        f"{names[3]},Degas,",
        f"{absolute},Degas,landscape"]))
    assert table.source == tmp_path / "t.csv"
    assert table.paths == [str(tmp_path / n) for n in names]
    assert table.ids == names
    assert table.columns["artist"][2] == frozenset()
    assert table.columns["genre"][0] == {"landscape", "portrait"}
    assert table.columns["genre"][3] == frozenset()
    only = read_label_table(tmp_path / "t.csv", label_columns=["genre"])
    assert list(only.columns) == ["genre"]


def test_parquet_table_reads_list_cells_and_ids(tmp_path):
    names = make_images(tmp_path, 4)
    rows = {"id": ["a", "b", "c", "d"], "path": names,
            "style": [["ink", " wash "], ["ink"], [], None], "era": ["x", "x", None, "y"]}
    pq.write_table(pa.table(rows), tmp_path / "t.parquet")
    table = read_label_table(tmp_path / "t.parquet")
    assert table.ids == ["a", "b", "c", "d"]
    assert table.columns["style"] == [{"ink", "wash"}, {"ink"}, frozenset(), frozenset()]
    assert table.columns["era"] == [{"x"}, {"x"}, frozenset(), {"y"}]


@pytest.mark.parametrize("lines, message", [
    (["file,artist", "{0},a", "{1},a"], r"t\.csv: no path column 'path' \(columns found: \['file', 'art"),
    (["path,artist", "{0},a", "{1},a||b"], r"t\.csv, row 2, column 'artist': an empty label"),
    (["path,artist", "{0},a", "{1}, "], r"t\.csv, row 2, column 'artist': an empty label"),
    (["path,artist", "{0},a", "{1},b"], r"t\.csv, column 'artist': no label has two or more images"),
    (["path,artist", "{0},a", "img/missing.jpg,a", "img/gone.jpg,a"],
     r"t\.csv: 2 of 3 images do not exist \(row 2: .*missing\.jpg; row 3: .*gone\.jpg\)"),
    (["path,artist", "{0},a", "{1},a", "{0},a"], r"t\.csv: rows 1 and 3 both name the image .*p0\.jpg"),
])
def test_bad_csv_tables_name_file_row_and_column(tmp_path, lines, message):
    names = make_images(tmp_path, 2)
    path = write_csv(tmp_path / "t.csv", [line.format(*names) for line in lines])
    with pytest.raises(LabelTableError, match=message):
        read_label_table(path)


def test_a_named_label_column_must_exist(tmp_path):
    names = make_images(tmp_path, 2)
    path = write_csv(tmp_path / "t.csv", ["path,artist", f"{names[0]},a", f"{names[1]},a"])
    found = r"\(columns found: \['path', 'artist'\]\)"
    with pytest.raises(LabelTableError, match=r"t\.csv: no label column 'genre' " + found):
        read_label_table(path, label_columns=["genre"])
    with pytest.raises(LabelTableError, match=r"t\.csv, column 'path': holds paths or ids"):
        read_label_table(path, label_columns=["path"])


def test_bad_parquet_cells_and_suffix(tmp_path):
    names = make_images(tmp_path, 2)
    pq.write_table(pa.table({"path": names, "artist": [["a"], ["a", ""]]}), tmp_path / "t.parquet")
    with pytest.raises(LabelTableError, match=r"t\.parquet, row 2, column 'artist': an empty label"):
        read_label_table(tmp_path / "t.parquet")
    pq.write_table(pa.table({"path": names, "artist": ["a", ""]}), tmp_path / "u.parquet")
    with pytest.raises(LabelTableError, match=r"u\.parquet, row 2, column 'artist': an empty label"):
        read_label_table(tmp_path / "u.parquet")
    (tmp_path / "t.tsv").write_text("path\tartist\n")
    with pytest.raises(LabelTableError, match=r"t\.tsv: a label table is a \.csv or \.parquet file"):
        read_label_table(tmp_path / "t.tsv")


def test_a_label_with_one_image_is_never_a_query(tmp_path):
    names = make_images(tmp_path, 4)
    table = read_label_table(write_csv(tmp_path / "t.csv", [
        "path,artist", f"{names[0]},a", f"{names[1]},a", f"{names[2]},solo", f"{names[3]},"]))
    codes = np.eye(4, dtype=np.float32)
    result = score_table({"m": codes}, table, "loo", ks=(1,))["m"]["artist"]
    assert result.query.tolist() == [0, 1]
    assert result.left_out == 1   # the "solo" image; the unlabelled one is no query at all


# --- scoring a table and its report section -------------------------------------------------

def test_score_table_and_markdown_section(tmp_path):
    names = make_images(tmp_path, 12)
    artists = ["a", "a", "a", "b", "b", "b", "c", "c", "c", "d", "d", ""]
    genres = ["x|y", "x", "y", "x", "", "y", "x", "y", "x", "y", "x", "y"]
    table = read_label_table(write_csv(tmp_path / "t.csv", ["path,artist,genre"] + [
        f"{name},{artist},{genre}" for name, artist, genre in zip(names, artists, genres)]))
    rng = np.random.default_rng(0)
    codes = {"good": np.eye(5, dtype=np.float32)[[ord(a) - 96 if a else 0 for a in artists]],
             "noise": rng.normal(size=(12, 5)).astype(np.float32)}
    loo = score_table(codes, table, "loo", ks=(1, 10, 100))
    assert loo["good"]["artist"].summary()["map"] == 100.0
    split = query_database_split(table.columns["artist"], 0.3, seed=0)
    scored = score_table(codes, table, "split", split=split, ks=(1, 10, 100))
    assert set(scored) == {"good", "noise"} and set(scored["good"]) == {"artist", "genre"}
    with pytest.raises(ValueError, match="needs split"):
        score_table(codes, table, "split")
    lines = markdown_section(loo, table, protocol="loo")
    text = "\n".join(lines)
    assert "| model | mAP | mAP@1 | mAP@10 | mAP@100 | P@1 | recall@10 | hit@10 | queries |" in text
    assert "| good | 100.00 |" in text and "| *chance* |" in text
    assert "### artist" in text and "### genre" in text
    assert "- good: best a 100.00 (3), b 100.00 (3), c 100.00 (3); worst d 100.00 (2)" in text
    # the first model minus the others, queries resampled by their label set ("x|y" its own)
    differences = label_differences(loo, table.columns, resamples=200, seed=0)
    good, noise = loo["good"]["genre"], loo["noise"]["genre"]
    clusters = [genres[i] for i in good.query.tolist()]
    for key in ("map", "p@1"):
        expected = paired_difference(good.values[key], noise.values[key], clusters, resamples=200, seed=0)
        assert differences["genre"]["noise"][key] == expected.as_list()
        assert expected.value == pytest.approx(good.summary()[key] - noise.summary()[key])
    assert label_differences({"good": loo["good"]}, table.columns, 200, 0) == {}
    assert label_differences(loo, table.columns, 0, 0) == {}
    text = "\n".join(markdown_section(loo, table, protocol="loo", differences=differences))
    assert "with the queries resampled by artist" in text and "| model | mAP: good minus model |" in text
    row = differences["genre"]["noise"]
    assert f"| noise | {interval_text(row['map'])} | {interval_text(row['p@1'])} |" in text
