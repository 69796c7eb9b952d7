"""Fused codes and zero-shot tagging in the evaluation command, on real small shards (a train
split with tagged styles, two test splits sharing their styles), a real checkpoint and the fake
sentence-transformers folder of conftest.py."""
from __future__ import annotations

import io
import json
import math
import shutil
from contextlib import redirect_stdout

import numpy as np
import pytest
from PIL import Image

import pipeline.eval as eval_command
from conftest import write_images_manifest
from common.config import ConfigError, load_config
from common.schema import Fused
from evaluation.embed import EvalError
from evaluation.fusion import parse_fused
from evaluation.tagging_eval import TaggedStyles, training_rows
from shard_factory import make_split
from tagging import TagHead, TextEncoder, load_scores, metrics_from_file
from test_eval_run import (EVAL_OVERRIDES, MODEL_OVERRIDES, N_CONTENTS, _set_content_manifest,
                           _write_checkpoint)

ZERO_SHOT = "pixel art"
# Words of the fake encoder's vocabulary, so that every tag embeds apart. The last training
# style has only the zero-shot tag: it has nothing left to train on.
TRAIN_TAGS = (["watercolour", "soft pastel"], ["oil painting", "bold line", ZERO_SHOT],
              ["ink wash", "bold line"], [ZERO_SHOT])
TEST_TAGS = (["watercolour", ZERO_SHOT], ["oil painting", "bold line"],
             ["ink wash", "soft pastel", ZERO_SHOT])
FUSED = "nst+colour_hist"


@pytest.fixture(scope="module")
def tagged_shards(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tagged")
    manifest = write_images_manifest(root / "inputs", "content", N_CONTENTS, 40, seed=5)
    shards = root / "shards"
    make_split(shards, "train", n_styles=16, per_style=2, size=32, seed=10,
               n_contents=N_CONTENTS, held_out="m2", tags=TRAIN_TAGS)
    for split in ("test-m1", "test-m2"):  # the same styles in every test split, as stage 1 plans
        make_split(shards, split, n_styles=6, per_style=3, size=32, methods=(split[5:],), seed=20,
                   n_contents=N_CONTENTS, held_out="m2", tags=TEST_TAGS)
        _set_content_manifest(shards / split, manifest)
    checkpoint = _write_checkpoint(root / "run" / "checkpoints" / "last.pt", MODEL_OVERRIDES)
    return {"shards": shards, "checkpoint": f"nst={checkpoint}"}


def _tagging_overrides(text_model) -> list[str]:
    return [*EVAL_OVERRIDES, "eval.fused=[{models: [nst, colour_hist], weights: [1, 2]}]",
            "eval.tagging.enabled=true", f"eval.tagging.text_model={text_model}",
            f"eval.tagging.zero_shot_tags=[{ZERO_SHOT}]", "eval.tagging.head.epochs=5",
            "eval.tagging.picture_images=3"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tagged_eval(tagged_shards, fake_model, tmp_path_factory) -> dict:
    """The evaluation command with a checkpoint, a baseline, their fused pair and tagging, run
    in this process: a subprocess would import torch, timm and sentence-transformers again
    (tests/test_eval_run.py runs the command as a script)."""
    out = tmp_path_factory.mktemp("tagged-eval") / "eval"
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = eval_command.main(["--shards", str(tagged_shards["shards"]), "--checkpoint",
                                  tagged_shards["checkpoint"], "--baselines", "colour_hist",
                                  "--out", str(out), *_tagging_overrides(fake_model)])
    assert code == 0
    return {"out": out, "printed": printed.getvalue(),
            "report": json.loads((out / "report.json").read_text())}


def test_fused_codes_are_the_weighted_unit_concatenation(tagged_eval):
    embeddings = tagged_eval["out"] / "embeddings"
    for split in ("test-m1", "test-m2"):
        nst, hist, fused = (np.load(embeddings / model / f"{split}.npz")
                            for model in ("nst", "colour_hist", FUSED))
        for codes in ("images", "references", "contents"):
            expected = np.concatenate([_unit(nst[codes]), 2 * _unit(hist[codes])], 1) / math.sqrt(5)
            np.testing.assert_allclose(fused[codes], expected, atol=1e-5)
            np.testing.assert_allclose(np.linalg.norm(fused[codes], axis=1), 1.0, atol=1e-5)
    report = tagged_eval["report"]
    assert set(report["models"]) == {"nst", "colour_hist", FUSED}
    assert report["models"][FUSED]["test-m2"]["style_map"] is not None


def test_tagging_report_section_summary_and_picture(tagged_eval):
    tagging = tagged_eval["report"]["tagging"]
    meta = tagging["meta"]
    assert (meta["train_styles"], meta["train_styles_without_tags"], meta["test_styles"]) == (12, 4, 6)
    assert meta["zero_shot_tags"] == {ZERO_SHOT: 4}
    assert set(tagging["models"]) == {"nst", "colour_hist", FUSED}
    for metrics in tagging["models"].values():
        assert all(0 <= value <= 100 for value in metrics.values() if value is not None)
        assert metrics["tag_map_chance"] < 100 and metrics["zero_shot_tag_map"] is not None
    assert "tag mAP" in tagged_eval["printed"] and "\nchance " in tagged_eval["printed"]
    markdown = (tagged_eval["out"] / "report.md").read_text()
    assert "## Zero-shot style tagging" in markdown and f"| {FUSED} |" in markdown
    assert "| *chance* |" in markdown and f"`{ZERO_SHOT}` (4)" in markdown
    with Image.open(tagged_eval["out"] / "tagging.png") as picture:
        assert picture.width > 400 and picture.height > 300


def test_scores_and_heads_are_saved_and_agree(tagged_eval, fake_model):
    out, text = tagged_eval["out"], TextEncoder(fake_model)
    for model, metrics in tagged_eval["report"]["tagging"]["models"].items():
        saved = load_scores(out / "tagging" / f"{model}.npz")
        assert len(saved.image_ids) == 6
        assert saved.zero_shot.tolist() == [tag == ZERO_SHOT for tag in saved.vocabulary]
        recomputed = metrics_from_file(out / "tagging" / f"{model}.npz", ks=(5, 10))
        assert all(metrics[key] == pytest.approx(value, abs=1e-3)
                   for key, value in recomputed.items() if not math.isnan(value))
        # The zero-shot tag never reaches training: the saved head never saw it.
        head = TagHead.load(out / "heads" / f"{model}.pt", text)
        assert head.vocabulary == ["bold line", "ink wash", "oil painting", "soft pastel", "watercolour"]
        assert head.image_model == model and head.image_model_hash
    # The saved scores are the fused head's ranking of the fused codes of the test styles.
    head = TagHead.load(out / "heads" / f"{FUSED}.pt", text)
    saved = load_scores(out / "tagging" / f"{FUSED}.npz")
    references = np.load(out / "embeddings" / FUSED / "test-m1.npz")
    order = [references["reference_ids"].tolist().index(i) for i in saved.image_ids]
    np.testing.assert_allclose(head.score(references["references"][order], saved.vocabulary),
                               saved.scores, atol=1e-5)


def _main(capsys, shards, out, *overrides: str) -> str:
    code = eval_command.main(["--shards", str(shards), "--baselines", "colour_hist",
                              "--out", str(out), *EVAL_OVERRIDES, *overrides])
    assert code == 2
    assert not out.exists()  # refused before any embedding work
    return capsys.readouterr().err


def test_a_fused_model_that_is_not_evaluated_is_refused_by_name(tagged_shards, tmp_path, capsys):
    err = _main(capsys, tagged_shards["shards"], tmp_path / "eval",
                "eval.fused=[{models: [colour_hist, nsst]}]")
    assert "eval.fused[0] fuses 'nsst'" in err and "colour_hist" in err


def test_a_bad_text_model_path_names_the_key(tagged_shards, tmp_path, capsys, monkeypatch):
    # A relative path in an override is relative to the working directory, wherever that is.
    monkeypatch.chdir(tmp_path)
    err = _main(capsys, tagged_shards["shards"], tmp_path / "eval", "eval.tagging.enabled=true",
                "eval.tagging.text_model=models/no-such-encoder")
    assert "eval.tagging.text_model" in err and str(tmp_path / "models" / "no-such-encoder") in err


@pytest.mark.parametrize("bad, message", [([], "empty tag list"),
                                          (["ink wash", 3], "every tag must be a string")])
def test_malformed_training_tags_are_named(tagged_shards, tmp_path, capsys, bad, message):
    shards = shutil.copytree(tagged_shards["shards"], tmp_path / "shards")
    shutil.rmtree(shards / "train")
    make_split(shards, "train", n_styles=3, per_style=1, size=32, seed=10, held_out="m2",
               tags=(["ink wash"], bad))
    err = _main(capsys, shards, tmp_path / "eval", "eval.tagging.enabled=true")
    assert message in err and "shard-000000.tar, sample sst10-1" in err


def test_zero_shot_tags_are_taken_out_of_training_rows():
    styles = TaggedStyles([], [["a", "z"], ["z"], ["b"]])
    assert training_rows(styles, ["z"]) == ([0, 2], [["a"], ["b"]])
    with pytest.raises(EvalError, match="nothing to train on"):
        training_rows(styles, ["a", "b", "z"])


@pytest.mark.parametrize("entries, message", [
    ("[{models: [a]}]", "at least 2 items"),
    ("[{models: [a, b], weights: [1]}]", "at least 2 items"),
    ("[{models: [a, b], weights: [0, 1]}]", "greater than 0"),
    ("[{models: [a, b], weigths: [1, 1]}]", "weigths"),
])
def test_bad_fused_entries_are_config_errors(entries, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"eval.fused={entries}"])


@pytest.mark.parametrize("entries, message", [
    ([Fused(models=["a", "c"])], "fuses 'c', which this evaluation does not run"),
    ([Fused(models=["a", "b"]), Fused(models=["a", "b"])], "'a\\+b' is given twice"),
])
def test_bad_fused_entries_are_named(entries, message):
    with pytest.raises(EvalError, match=message):
        parse_fused(entries, ["a", "b"])
    assert [f.name for f in parse_fused([Fused(models=["b", "a"])], ["a", "b"])] == ["b+a"]
