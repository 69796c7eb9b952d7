"""Labelled retrieval in pipeline/eval.py: a real labelled table of JPEGs, without NST shards,
with codes stored by pipeline/embed.py (its writer, and the command end to end), on the real
paintings when they are there, and the synthetic world's labels."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import storage
from conftest import REPO_ROOT
from pipeline.eval import main as eval_main
from stylecode.store import ModelInfo, file_path, write_file
from test_eval_run import MODEL_OVERRIDES, _write_checkpoint

REAL_ART = Path(__file__).resolve().parents[2] / "shared" / "real-art"
BASE = ["eval.image_size=32", "eval.fused=[]", "eval.tagging.enabled=false",
        "eval.baselines=[colour_hist]", "eval.labelled.ks=[1,5]"]
PALETTES = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 180, 40)}


def _table(root: Path) -> Path:
    """Nine JPEGs, three per colour family, labelled by colour (two also by 'warm'), and one
    unlabelled distractor."""
    rng = np.random.default_rng(0)
    rows = []
    for name, colour in [*((n, c) for n, c in PALETTES.items() for _ in range(3)), ("", (128, 128, 128))]:
        pixels = np.clip(np.array(colour) + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
        path = root / "images" / f"{len(rows)}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=92)
        rows.append({"path": f"images/{path.name}", "colour": name,
                     "mood": "warm" if name == "red" else ""})
    table = root / "labels.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "colour", "mood"])
        writer.writeheader()
        writer.writerows(rows)
    return table


def test_a_labelled_table_is_scored_without_shards(tmp_path, capsys):
    table = _table(tmp_path)
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), f"eval.labelled.table={table}", *BASE]) == 0
    report = json.loads((out / "report.json").read_text())["meta"]["labelled"]
    loo = report["loo"]["colour"]
    assert loo["queries"] == 9 and loo["colour_hist"]["map"] == pytest.approx(100.0)
    assert loo["chance"]["p@1"] == pytest.approx(100 * 2 / 9)   # 2 relevant among 9 others
    assert report["loo"]["mood"]["queries"] == 3
    split = list(csv.DictReader(open(out / "labelled" / "split.csv")))
    assert {row["role"] for row in split} == {"query", "database"} and len(split) == 10
    assert "### colour" in (out / "report.md").read_text()
    assert (out / "labelled_grid.png").stat().st_size > 0
    # a rerun into the same folder scores the same split
    assert eval_main(["--out", str(out), f"eval.labelled.table={table}", *BASE]) == 0
    again = json.loads((out / "report.json").read_text())["meta"]["labelled"]
    assert again["split"] == report["split"]


@pytest.mark.parametrize("where", ["folder", "url"])
def test_stored_embeddings_are_scored_without_re_embedding(tmp_path, where):
    table = _table(tmp_path)
    paths = [str((tmp_path / "images" / f"{i}.jpg").resolve()) for i in range(10)]
    codes = np.zeros((10, 4), np.float32)
    codes[np.arange(10), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]] = 1.0   # each colour on its own axis
    store = tmp_path / "codes" if where == "folder" else f"memory://codes-{tmp_path.name}"
    storage.makedirs(store)
    order = np.random.default_rng(1).permutation(10)              # file order is not table order
    write_file(file_path(store, 0), [f"i{i}" for i in order], [paths[i] for i in order],
               codes[order], [""] * 10, ModelInfo("stored", "0123456789abcdef", 4))
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), "--baselines", "none", "--embeddings", f"mine={store}",
                      f"eval.labelled.table={table}", *BASE]) == 0
    loo = json.loads((out / "report.json").read_text())["meta"]["labelled"]["loo"]["colour"]
    assert loo["mine"]["map"] == pytest.approx(100.0) and loo["mine"]["p@1"] == pytest.approx(100.0)


@pytest.mark.slow
def test_a_report_is_recomputed_from_stored_codes_without_the_model(ray_env, tmp_path):
    """The evaluation of a checkpoint on a table, then pipeline/embed.py's codes of the table's
    images by that checkpoint scored with --embeddings, the checkpoint deleted first (so
    nothing is loaded or embedded again): the same labelled figures, to the last digit."""
    table = _table(tmp_path)
    checkpoint = _write_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", MODEL_OVERRIDES)
    labelled = ["--baselines", "none", f"eval.labelled.table={table}", *BASE]
    assert eval_main(["--out", str(tmp_path / "embedded"), "--checkpoint", f"nst={checkpoint}",
                      *labelled]) == 0
    codes = tmp_path / "codes"
    embed = subprocess.run([sys.executable, str(REPO_ROOT / "pipeline" / "embed.py"), "--input",
                            str(tmp_path / "images"), "--checkpoint", f"nst={checkpoint}", "--out",
                            str(codes), "embed.ray.num_actors=1", "embed.ray.object_store_mb=100"],
                           env=ray_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert embed.returncode == 0, embed.stderr[-3000:]
    checkpoint.unlink()
    assert eval_main(["--out", str(tmp_path / "stored"), "--embeddings", f"nst={codes}", *labelled]) == 0
    embedded, stored = (json.loads((tmp_path / out / "report.json").read_text())["meta"]["labelled"]
                        for out in ("embedded", "stored"))
    assert embedded["loo"]["colour"]["nst"]["map"] > embedded["loo"]["colour"]["chance"]["map"]
    assert stored == embedded


def test_bad_tables_are_named_before_any_work(tmp_path, capsys):
    table = _table(tmp_path)
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), f"eval.labelled.table={table}",
                      "eval.labelled.columns=[artist]", *BASE]) == 2
    assert "artist" in capsys.readouterr().err and not (out / "report.json").exists()
    (tmp_path / "images" / "4.jpg").unlink()
    assert eval_main(["--out", str(out), f"eval.labelled.table={table}", *BASE]) == 2
    assert "4.jpg" in capsys.readouterr().err
    assert eval_main(["--out", str(out), *BASE]) == 2                 # neither shards nor table
    assert "nothing to evaluate" in capsys.readouterr().err


@pytest.mark.skipif(not (REAL_ART / "index.csv").is_file(), reason="../shared/real-art is absent")
def test_artist_retrieval_on_the_real_paintings(tmp_path):
    from pipeline.make_manifests import main as make_manifests
    folder = tmp_path / "art"
    assert make_manifests(["--contents", str(REAL_ART / "paintings"), "--styles",
                           str(REAL_ART / "paintings"), "--out", str(folder),
                           "--label-column", "artist"]) == 0
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), f"eval.labelled.table={folder / 'labels.csv'}",
                      "eval.labelled.protocols=[loo]", *BASE]) == 0
    artist = json.loads((out / "report.json").read_text())["meta"]["labelled"]["loo"]["artist"]
    # the works of the artists with two or more paintings query the 96 others
    assert artist["queries"] >= 30 and artist["colour_hist"]["map"] > artist["chance"]["map"]


def test_unseen_and_seen_queries_split_the_table_by_what_the_encoders_trained_on(tmp_path):
    from common.config import load_config
    from evaluation.labelled_eval import TableSource, prepare_labelled
    table = _table(tmp_path)
    cfg = load_config(None, ["eval.labelled.protocols=[loo,unseen,seen]"])
    trained = {str((tmp_path / "images" / f"{i}.jpg").resolve()) for i in (0, 3, 4)}
    task = prepare_labelled(cfg, TableSource(table), tmp_path / "eval", trained)
    queries, gallery = task.splits["unseen"]
    assert queries.tolist() == [1, 2, 5, 6, 7, 8, 9] and gallery.tolist() == list(range(10))
    queries, gallery = task.splits["seen"]
    assert queries.tolist() == [0, 3, 4] and gallery.tolist() == list(range(10))
    assert task.splits["loo"] is None
    # nothing trained on (or not known): unseen would repeat leave-one-out and seen be empty,
    # so both are left out
    splits = prepare_labelled(cfg, TableSource(table), tmp_path / "eval", set()).splits
    assert "unseen" not in splits and "seen" not in splits
