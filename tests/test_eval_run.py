"""pipeline/eval.py end to end on real tiny shards, a real content manifest and a real
checkpoint file, run as a user runs it (a subprocess, from another working directory)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.config import load_config
from conftest import REPO_ROOT, write_images_manifest
from evaluation.bootstrap import paired_difference
from evaluation.embed import (EvalError, RecurringImages, SplitEmbeddings, check_split,
                              content_manifest_path, embed_split)
from evaluation.metrics import rank_queries
from evaluation.models import build_models
from evaluation.report import markdown_report, write_json
from evaluation.scoring import CROPS, TEST, metrics_for, score_split
from models.baselines import build_baselines
from models.embedder import Embedder
from models.encoder import StyleEncoder
from models.factory import checkpoint_name
from pipeline.eval import main as eval_main
from shard_factory import make_split
from shards.reader import SplitRoles, read_index
from shards.writer import ShardWriter, write_split_info

N_CONTENTS = 12
SPLITS = ("test-m1", "test-m2")
# A small encoder: the VGG branch up to relu2_1 only, at 32 px.
MODEL_OVERRIDES = ["train.image_size=32", "train.model.vit.enabled=false",
                   "train.model.vgg.max_layer=relu2_1", "train.model.embed_dim=16",
                   "train.model.fusion_hidden=32", "train.model.style_net.style_size=32",
                   "train.model.style_net.residual=false"]
# No fused pairs (the default ones fuse a model named nst) and no tagging (no train split here):
# tests/test_eval_tagging.py covers both.
EVAL_OVERRIDES = ["eval.image_size=32",
                  "eval.chunk_size=7", "eval.gram_channels=8", "eval.grid_queries=3",
                  "eval.grid_neighbours=3", "eval.gram_layers=[relu1_1,relu2_1]",
                  "eval.fused=[]", "eval.tagging.enabled=false"]


def _set_content_manifest(split_dir: Path, manifest: Path | None) -> None:
    info_path = split_dir / "_info.json"
    info = json.loads(info_path.read_text())
    info["content_manifest"] = str(manifest) if manifest else None
    info_path.write_text(json.dumps(info))


def _write_checkpoint(path: Path, overrides: list[str]) -> Path:
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    model = StyleEncoder(cfg.train.model, cfg.train.image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": cfg.model_dump(), "step": 0}, path)
    return path


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    manifest = write_images_manifest(root / "inputs", "content", N_CONTENTS, 40, seed=5)
    shards = root / "shards"
    for seed, split in enumerate(SPLITS):
        make_split(shards, split, n_styles=6, per_style=5, size=32, methods=(split[5:],),
                   seed=seed, n_contents=N_CONTENTS, held_out="m2", styles_per_group=2)
        _set_content_manifest(shards / split, manifest)
    make_split(shards, "crops", n_styles=4, per_style=4, size=32, methods=("crop",), seed=7,
               n_contents=N_CONTENTS)
    checkpoint = _write_checkpoint(root / "run" / "checkpoints" / "last.pt", MODEL_OVERRIDES)
    return {"root": root, "shards": shards, "checkpoint": checkpoint, "manifest": manifest}


def _run_eval(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "pipeline" / "eval.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_eval_writes_report_embeddings_and_pictures(eval_inputs, tmp_path):
    out = tmp_path / "eval"
    result = _run_eval(["--shards", str(eval_inputs["shards"]), "--checkpoint", str(eval_inputs["checkpoint"]),
                        "--baselines", "vgg_gram", "--out", str(out), *EVAL_OVERRIDES], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "report:" in result.stdout

    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["held_out"] == "test-m2"
    assert set(report["models"]) == {"run", "vgg_gram"}  # RUN/checkpoints/last.pt is named RUN
    for splits in report["models"].values():
        assert set(splits) == {*SPLITS, "crops"}
        for split in SPLITS:
            assert list(splits[split]) == [m.name for m in metrics_for(TEST)]
            assert all(0.0 <= value <= 100.0 for value in splits[split].values())
            assert splits[split]["style_recall1"] <= splits[split]["style_recall10"]
        assert list(splits["crops"]) == [m.name for m in metrics_for(CROPS)]
    # Chance levels per split, one set for all models (they depend on the labels only).
    assert set(report["chance"]) == {*SPLITS, "crops"}
    assert all(0.0 < value < 100.0 for value in report["chance"]["test-m1"].values())
    # Factory styles are palettes + stripes: a Gram descriptor must find them far above chance.
    assert report["models"]["vgg_gram"]["test-m1"]["style_map"] > 50.0
    assert report["models"]["vgg_gram"]["test-m1"]["style_map"] > 2 * report["chance"]["test-m1"]["style_map"]

    markdown = (out / "report.md").read_text()
    assert "test-m2 (held out)" in markdown and "lower is better" in markdown
    assert "| vgg_gram |" in markdown and "| run |" in markdown and "| *chance* |" in markdown

    saved = np.load(out / "embeddings" / "run" / "test-m1.npz")
    assert saved["images"].shape == (30, 16)  # 6 styles x 5 stylizations, embed_dim 16
    assert len(saved["style_ids"]) == len(saved["content_ids"]) == len(saved["indices"]) == 30
    assert saved["references"].shape == (6, 16)
    assert np.allclose(np.linalg.norm(saved["images"], axis=1), 1.0, atol=1e-4)
    assert set(saved["content_gallery_ids"]) == set(saved["content_ids"])
    assert (out / "embeddings" / "vgg_gram" / "crops.npz").exists()
    # The report is what its saved embeddings score, to the last digit.
    recomputed = _report_from_saved(out)
    assert recomputed["models"] == report["models"] and recomputed["chance"] == report["chance"]
    # The held-out split's differences (the first model minus the others), from the same arrays.
    differences = report["meta"]["differences"]
    assert (differences["split"], differences["reference"]) == ("test-m2", "run")
    assert list(differences["models"]) == ["vgg_gram"]
    assert differences["models"]["vgg_gram"] == _differences_from_saved(
        out, eval_inputs["shards"], "test-m2", "run", "vgg_gram")
    assert "## Differences on `test-m2`, with 95% intervals" in markdown
    assert "| vgg_gram | " in markdown.split("## Differences")[1]
    assert (out / "config.yaml").exists()
    for picture in ("style_vs_content.png", "retrieval_grid.png"):
        with Image.open(out / picture) as img:
            assert img.width > 300 and img.height > 200
    # the same report as a page, its pictures linked relatively (it opens from disk)
    page = (out / "report.html").read_text()
    assert "<table>" in page and "test-m2 (held out)" in page and "<td>vgg_gram</td>" in page
    assert re.findall(r'<img src="([^"]+)"', page) == ["style_vs_content.png", "retrieval_grid.png"]


def _report_from_saved(out: Path) -> dict:
    """report.json's models and chance levels, recomputed from ``out/embeddings/<model>/<split>.npz``
    alone (scored afresh, written by the report's own writer)."""
    results = {}
    for path in sorted((out / "embeddings").glob("*/*.npz")):
        model, saved = path.parent.name, np.load(path)
        split = SplitEmbeddings(path.stem, saved["style_ids"], saved["content_ids"], saved["indices"],
                                saved["reference_ids"], {model: saved["images"]},
                                {model: saved["references"]})
        if "contents" in saved:
            split.content_gallery_ids, split.contents = saved["content_gallery_ids"], {model: saved["contents"]}
        results.setdefault(model, {})[path.stem] = score_split(
            split, model, CROPS if path.stem == "crops" else TEST,
            load_config(None, EVAL_OVERRIDES).eval.chunk_size, torch.device("cpu"))
    write_json(results, {}, out / "recomputed.json")
    return json.loads((out / "recomputed.json").read_text())


def _differences_from_saved(out: Path, shards: Path, split: str, reference: str, model: str) -> dict:
    """``reference`` minus ``model`` on one split, ranked afresh from the saved embeddings, the
    styles drawn by their group (two sibling styles a group here)."""
    ref, other = (np.load(out / "embeddings" / name / f"{split}.npz") for name in (reference, model))
    index = read_index(shards / split)
    group_of = dict(zip(index.column("style_id").to_pylist(), index.column("group").to_pylist()))
    groups = [group_of[style] for style in ref["style_ids"].tolist()]
    assert len(set(groups)) == 3 and len(set(ref["style_ids"].tolist())) == 6
    resamples = load_config(None, EVAL_OVERRIDES).eval.bootstrap_resamples
    return {metric: paired_difference(rank_queries(ref["images"], ref[ids]).ap,
                                      rank_queries(other["images"], other[ids]).ap,
                                      groups, ref["content_ids"], resamples, seed=0).as_list()
            for metric, ids in (("style_map", "style_ids"), ("content_map", "content_ids"))}


def test_eval_rejects_shards_without_test_splits(eval_inputs, tmp_path):
    only_crops = tmp_path / "only-crops"
    make_split(only_crops, "crops", n_styles=2, per_style=2, size=16, methods=("crop",))
    result = _run_eval(["--shards", str(only_crops), "--baselines", "vgg_gram", "--out", str(tmp_path / "o")],
                       cwd=tmp_path)
    assert result.returncode == 2
    assert "no test-<method> splits" in result.stderr and "Traceback" not in result.stderr


def test_a_checkpoint_of_another_architecture_is_named(eval_inputs, tmp_path):
    # The weights of a 16-d encoder saved with a config that describes an 8-d one.
    mixed = torch.load(eval_inputs["checkpoint"], weights_only=True)
    mixed["config"]["train"]["model"]["embed_dim"] = 8
    torch.save(mixed, tmp_path / "mixed.pt")
    with pytest.raises(EvalError, match=r"checkpoint mixed \(.*mixed\.pt\) does not fit"):
        build_models([f"mixed={tmp_path / 'mixed.pt'}"], load_config(), torch.device("cpu"))


def test_a_cut_checkpoint_is_named_not_blamed_on_the_architecture(eval_inputs, tmp_path, capsys):
    cut = tmp_path / "cut.pt"
    data = eval_inputs["checkpoint"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(EvalError) as caught:
        build_models([f"cut={cut}"], load_config(), torch.device("cpu"))
    message = str(caught.value)
    assert message.startswith(f"checkpoint cut: {cut} cannot be read as a checkpoint: the file is "
                              "truncated or corrupt") and "architecture" not in message
    assert eval_main(["--shards", str(eval_inputs["shards"]), "--checkpoint", str(cut), "--baselines",
                      "none", "--out", str(tmp_path / "o"), *EVAL_OVERRIDES]) == 2
    assert f"error: checkpoint cut: {cut} cannot be read" in capsys.readouterr().err


def test_checkpoint_names():
    assert checkpoint_name("runs/a/checkpoints/last.pt") == ("a", Path("runs/a/checkpoints/last.pt"))
    assert checkpoint_name("best=runs/a/x=1.pt") == ("best", Path("runs/a/x=1.pt"))
    assert checkpoint_name("runs/x=1/step.pt") == ("step", Path("runs/x=1/step.pt"))


def test_missing_content_manifest_is_named(eval_inputs, tmp_path):
    split = make_split(tmp_path, "test-m1", n_styles=2, per_style=2, size=16, methods=("m1",))
    with pytest.raises(EvalError, match="names no content_manifest"):
        content_manifest_path(split)
    _set_content_manifest(split, tmp_path / "gone.parquet")
    with pytest.raises(EvalError, match="gone.parquet"):
        embed_split(split, [], batch_size=4, with_contents=True)


def test_empty_split_is_an_error(tmp_path):
    split = tmp_path / "test-m1"
    writer = ShardWriter(split, 0, "test-m1")
    write_split_info(split, "test-m1", [writer.close()], {})
    with pytest.raises(EvalError, match="holds no images"):
        embed_split(split, [], batch_size=4, with_contents=False)


def test_a_cut_test_shard_is_named_before_any_embedding(eval_inputs, tmp_path, capsys):
    shards = Path(shutil.copytree(eval_inputs["shards"], tmp_path / "shards"))
    tar = shards / "test-m2" / "shard-000001.tar"
    with open(tar, "r+b") as fh:
        fh.truncate(tar.stat().st_size // 2)
    with pytest.raises(EvalError, match=rf"split test-m2 \(.*\): {tar}: (cannot be read as a tar|"
                                        r"holds \d+ members).*truncated or corrupt"):
        check_split(shards / "test-m2")
    assert eval_main(["--shards", str(shards), "--baselines", "colour_hist", "--out",
                      str(tmp_path / "o"), *EVAL_OVERRIDES]) == 2
    captured = capsys.readouterr()
    assert f"error: split test-m2 ({shards / 'test-m2'}): {tar}" in captured.err
    assert "evaluating" not in captured.out    # refused before any embedding work


def test_a_test_split_without_samples_is_refused_by_name(eval_inputs, tmp_path, capsys):
    shards = Path(shutil.copytree(eval_inputs["shards"], tmp_path / "shards"))
    no_shards, no_samples = shards / "test-m3", shards / "test-m4"
    write_split_info(no_shards, "test-m3", [], {"held_out": "m2"})
    write_split_info(no_samples, "test-m4", [ShardWriter(no_samples, 0, "test-m4").close()],
                     {"held_out": "m2"})
    for split in (no_shards, no_samples):
        _set_content_manifest(split, eval_inputs["manifest"])
    with pytest.raises(EvalError, match=r"split test-m3 \(.*\) has no complete shards"):
        check_split(no_shards)
    with pytest.raises(EvalError, match=r"split test-m4 \(.*\) holds no samples"):
        check_split(no_samples)
    assert eval_main(["--shards", str(shards), "--baselines", "colour_hist", "--out",
                      str(tmp_path / "o"), *EVAL_OVERRIDES]) == 2
    assert "error: split test-m3" in capsys.readouterr().err


def test_vgg_baselines_share_one_trunk_and_keep_their_codes(eval_inputs):
    cfg = load_config(None, EVAL_OVERRIDES)
    built = build_baselines(["vgg_moments", "vgg_gram", "vit_raw"], cfg)
    assert [names for names, _ in built] == [["vgg_moments", "vgg_gram"], ["vit_raw"]]
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        together = built[0][1](images)
        for name in ("vgg_moments", "vgg_gram"):
            (_, alone), = build_baselines([name], cfg)
            assert torch.allclose(together[name], alone(images)[name], atol=1e-5)
    with pytest.raises(KeyError, match="unknown baseline 'vgg_gramm'"):
        build_baselines(["vgg_gramm"], cfg)


class _CountingNet(torch.nn.Module):
    """Mean colour as a 3-d code; counts the images it is shown."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += len(images)
        return torch.nn.functional.normalize(images.mean(dim=(2, 3)), dim=1)


def test_references_and_contents_shared_by_splits_are_embedded_once(eval_inputs, tmp_path):
    # Two test splits pairing the same styles with the same contents, as stage 1 writes them.
    splits = [make_split(tmp_path, name, n_styles=4, per_style=3, size=32, seed=3,
                         n_contents=N_CONTENTS, methods=(name[5:],)) for name in SPLITS]
    for split in splits:
        _set_content_manifest(split, eval_inputs["manifest"])
    net = _CountingNet()
    model = Embedder(["count"], net, 32, torch.device("cpu"))
    recurring = RecurringImages([model], batch_size=5)
    first, second = (embed_split(s, [model], batch_size=5, with_contents=True, recurring=recurring)
                     for s in splits)
    n_contents = len(first.content_gallery_ids)
    assert net.seen == 2 * 12 + 4 + n_contents  # stylizations twice, references and contents once
    assert np.array_equal(first.references["count"], second.references["count"])
    assert np.array_equal(first.contents["count"], second.contents["count"])
    alone = embed_split(splits[1], [model], batch_size=5, with_contents=True)
    assert np.allclose(alone.references["count"], second.references["count"])
    assert np.allclose(alone.contents["count"], second.contents["count"])


def test_pretrained_style_vector_and_colour_histogram_baselines_end_to_end(eval_inputs, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(eval_inputs["shards"], shards)
    # Say that test-m1 was stylized by Magenta's network: its style vector then scores its
    # own conditioning code there, which the report must say; so does the checkpoint, whose
    # encoder has the style network as a branch (train.model.style_net, on by default).
    info_path = shards / "test-m1" / "_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "networks": {"m1": "magenta"}}))
    out = tmp_path / "eval"
    result = _run_eval(["--shards", str(shards), "--checkpoint", str(eval_inputs["checkpoint"]),
                        "--baselines", "magenta_style,colour_hist",
                        "--out", str(out), *EVAL_OVERRIDES], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"run", "magenta_style", "colour_hist"}
    assert report["meta"]["own_code_splits"] == {"run": ["test-m1"], "magenta_style": ["test-m1"]}
    markdown = (out / "report.md").read_text()
    assert "Note: `magenta_style` computes the code that conditioned the network which " \
           "stylized `test-m1`" in markdown
    assert "Note: `run` takes as input (its style-net branch) the code that conditioned the " \
           "network which stylized `test-m1`" in markdown
    assert "a trained encoder" not in markdown and "`run` computes" not in markdown
    # Factory styles are palettes: the palette descriptor finds them far above chance (~17%).
    assert report["models"]["colour_hist"]["test-m1"]["style_map"] > 50.0
    codes = np.load(out / "embeddings" / "magenta_style" / "test-m2.npz")["images"]
    assert codes.shape == (30, 100) and np.allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-4)


def test_the_own_code_note_says_what_each_model_does():
    roles = SplitRoles(tests=["test-m1"], held_out="test-magenta", crops=None)
    results = {name: {split: {"style_map": 50.0} for split in roles.test_columns()}
               for name in ("nst", "magenta_style")}
    meta = {"shards": "/s", "held_out": "test-magenta",
            "own_code_splits": {"nst": ["test-magenta"], "magenta_style": ["test-m1", "test-magenta"]}}
    notes = [line for line in markdown_report(results, roles, meta).splitlines()
             if line.startswith("Note:")]
    assert notes == [
        "Note: `nst` takes as input (its style-net branch) the code that conditioned the network "
        "which stylized `test-magenta`: there it is given the very code the images were made "
        "from, not an independent view of style.",
        "Note: `magenta_style` computes the code that conditioned the network which stylized "
        "`test-m1`, `test-magenta`: there it scores its own conditioning code, not an "
        "independent view of style."]


def test_colour_histogram_sees_palette_not_layout():
    cfg = load_config(None, ["eval.colour_bins=4"])
    [(names, net)] = build_baselines(["colour_hist"], cfg)
    red_left = torch.zeros(1, 3, 8, 8)
    red_left[:, 0, :, :4] = 1.0                      # half red, half black
    red_right = red_left.flip(-1)                    # the same palette, mirrored
    blue_left = red_left[:, [2, 1, 0]]
    codes = net(torch.cat([red_left, red_right, blue_left]))
    assert names == ["colour_hist"] and codes.shape == (3, 64)
    assert torch.allclose(codes[0], codes[1])
    assert float(codes[0] @ codes[2]) == pytest.approx(0.5)   # they share only the black half
