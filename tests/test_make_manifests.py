"""pipeline/make_manifests.py: two folders of images become stage 1's manifests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.make_manifests import main
from shards.manifest import read_content_manifest, read_style_manifest


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _folders(root: Path) -> tuple[Path, Path]:
    for i, name in enumerate(["faces/a.jpg", "faces/b.jpg", "c.png"]):
        _image(root / "photos" / name, i)
    for i, name in enumerate(["monet/Water Lilies.jpg", "monet/Water_Lilies.jpg", "turner.png"]):
        _image(root / "paintings" / name, 10 + i)
    (root / "paintings" / "notes.txt").write_text("not an image")
    return root / "photos", root / "paintings"


def test_folders_become_manifests_with_groups_categories_and_tags(tmp_path, capsys):
    photos, paintings = _folders(tmp_path)
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps({"monet/Water Lilies.jpg": ["impressionism", "soft light"]}))
    out = tmp_path / "data" / "mine"
    assert main(["--contents", str(photos), "--styles", str(paintings), "--tags", str(tags),
                 "--out", str(out)]) == 0
    contents = read_content_manifest(out / "contents.parquet")
    styles = read_style_manifest(out / "styles.parquet")
    assert [(r.content_id, r.category) for r in contents] == [("c", ""), ("faces-a", "faces"),
                                                              ("faces-b", "faces")]
    # Ids lose spaces and dots and stay unique; the first subfolder is the group (else the id).
    assert [(r.style_id, r.group, r.tags) for r in styles] == [
        ("monet-Water_Lilies", "monet", ("impressionism", "soft light")),
        ("monet-Water_Lilies-2", "monet", ()), ("turner", "turner", ())]
    assert Path(styles[2].path) == (paintings / "turner.png").resolve()
    assert "3 style images, 2 groups, 1 with tags" in capsys.readouterr().out


def test_bad_tags_and_empty_folders_are_named(tmp_path, capsys):
    photos, paintings = _folders(tmp_path)
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps({"turner.png": "seascape"}))
    args = ["--contents", str(photos), "--styles", str(paintings), "--out", str(tmp_path / "m")]
    assert main([*args, "--tags", str(tags)]) == 2
    assert "'turner.png': tags must be a list of strings, got 'seascape'" in capsys.readouterr().err
    tags.write_text(json.dumps({"turnr.png": ["sea"]}))
    assert main([*args, "--tags", str(tags)]) == 2
    assert "1 path(s) match no image" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--contents", str(tmp_path / "empty"), "--styles", str(paintings),
                 "--out", str(tmp_path / "m")]) == 2
    assert "holds no image files" in capsys.readouterr().err


def test_label_column_writes_the_folders_as_a_labelled_table(tmp_path):
    import csv
    photos, paintings = _folders(tmp_path)
    out = tmp_path / "mine"
    assert main(["--contents", str(photos), "--styles", str(paintings), "--out", str(out),
                 "--label-column", "artist"]) == 0
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(row["id"], row["artist"]) for row in rows] == [
        ("monet-Water_Lilies", "monet"), ("monet-Water_Lilies-2", "monet"), ("turner", "")]
    assert all((out / row["path"]).is_file() for row in rows)   # relative to the table's folder


def test_demo_checks_every_variant_can_fill_its_batches_before_any_work(tmp_path, small_manifests):
    import pytest
    from pipeline.demo import DemoError, check_variants
    from common.config import load_config
    contents, styles = small_manifests                # 12 styles in 6 groups of 2
    config = tmp_path / "mine.yaml"
    config.write_text(f"inherit: {Path(__file__).resolve().parents[1] / 'configs/tiny.yaml'}\n"
                      f"data: {{content_manifest: {contents}, style_manifest: {styles}}}\n"
                      "stylize: {test_fraction: 0.34}\n")
    cfg = load_config(str(config), [])
    with pytest.raises(DemoError, match=r"variant no_nst: .*only 4 groups .* at most 4"):
        check_variants(str(config), [], cfg)          # styles_per_batch 10 in the tiny default
    fixed = ["demo.variants.no_nst=[train.mode=no_nst,train.styles_per_batch=4]"]
    check_variants(str(config), fixed, load_config(str(config), fixed))
    # NST training's raw-group term draws its groups from the same split
    raw = fixed + ["train.raw_groups_per_batch=5"]
    with pytest.raises(DemoError, match=r"variant nst: .*only 4 groups .*"
                                        r"train.raw_groups_per_batch=5: set .* at most 4"):
        check_variants(str(config), raw, load_config(str(config), raw))
