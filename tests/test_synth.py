"""The synthetic world generator (world/, CLI pipeline/synth.py): determinism, manifests, reuse, CLI, styles."""
from __future__ import annotations

import hashlib
from collections import Counter
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from common.config import DEFAULT_CONFIG, REPO_ROOT, load_config
from shards.manifest import read_content_manifest, read_style_manifest
from world.painting import GRAIN_TAGS, TECHNIQUE_TAGS, TECHNIQUES, StyleParams, palette_tags
from world.generate import (MARKER, content_image, ensure_world, generate_world, plan_groups,
                            style_source_image, world_dir, WorldError)

SMALL = {
    "dir": "unused",
    "categories": ["faces", "houses", "text"],
    "contents_per_category": 3,
    "groups_per_category": 3,
    "images_per_group": 2,
    "content_size": 32,
    "style_size": 48,
}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(SMALL, 7, tmp_path_factory.mktemp("world"), progress=False)


def test_manifests_validate_with_counts_and_columns(world):
    contents = read_content_manifest(world.content_manifest)
    styles = read_style_manifest(world.style_manifest)
    assert len(contents) == 3 * 3
    assert len(styles) == 3 * 3 * 2
    assert {c.category for c in contents} == set(SMALL["categories"])
    for c in contents:
        assert "." not in c.content_id
        with Image.open(c.path) as im:
            assert im.size == (32, 32) and im.mode == "RGB"
    for s in styles:
        assert "." not in s.style_id and "." not in s.group
        with Image.open(s.path) as im:
            assert im.size == (48, 48) and im.mode == "RGB"
    table = pq.read_table(world.style_manifest)
    assert table.column_names == ["style_id", "path", "group", "tags", "category", "technique"]
    assert pq.read_table(world.content_manifest).column_names == ["content_id", "path", "category"]
    rows = table.to_pylist()
    for r in rows:
        assert not Path(r["path"]).is_absolute()
        assert r["technique"] in TECHNIQUES
        assert r["tags"][:2] == list(TECHNIQUE_TAGS[r["technique"]][:2])
        assert sum(t in GRAIN_TAGS.values() for t in r["tags"]) == 1
        assert len(r["tags"]) == len(set(r["tags"])) >= 5
    info = json.loads((world.root / MARKER).read_text())
    assert info["seed"] == 7 and info["world"]["categories"] == SMALL["categories"]
    assert set(info["groups"]) == {r["group"] for r in rows}


def test_style_groups_are_single_category(world):
    rows = pq.read_table(world.style_manifest).to_pylist()
    cats: dict[str, set] = {}
    techs: dict[str, set] = {}
    for r in rows:
        cats.setdefault(r["group"], set()).add(r["category"])
        techs.setdefault(r["group"], set()).add(r["technique"])
    assert len(cats) == 3 * 3
    for group, found in cats.items():
        assert len(found) == 1
        assert group.startswith(f"g-{next(iter(found))}-")
        assert len(techs[group]) == 1
    counts = {g: sum(r["group"] == g for r in rows) for g in cats}
    assert set(counts.values()) == {2}


def test_style_sources_are_not_content_images(world):
    contents = {c: [content_image(c, i, 7, 32).astype(np.float32) for i in range(3)]
                for c in SMALL["categories"]}
    # the generator's own contents are reproduced exactly (a sanity check of the comparison) ...
    for c in read_content_manifest(world.content_manifest):
        index = int(c.content_id.rsplit("-", 1)[1])
        assert np.array_equal(np.asarray(Image.open(c.path)), contents[c.category][index])
    # ... while every style's source photo differs from every content photo of its category
    for spec in plan_groups(SMALL, 7):
        for j in range(SMALL["images_per_group"]):
            src = style_source_image(spec.category, spec.index, j, 7, 32).astype(np.float32)
            closest = min(np.abs(src - c).mean() for c in contents[spec.category])
            assert closest > 8.0, (spec.group_id, j, closest)


def test_same_seed_is_byte_identical(world, tmp_path):
    again = generate_world(SMALL, 7, tmp_path / "again", progress=False)
    first, second = _digest(world.root), _digest(again.root)
    assert first.keys() == second.keys()
    assert first == second


def test_different_seed_differs(world, tmp_path):
    other = generate_world(SMALL, 8, tmp_path / "other", progress=False)
    first, second = _digest(world.root), _digest(other.root)
    pngs = [k for k in first if k.endswith(".png")]
    assert first.keys() == second.keys()
    assert sum(first[k] != second[k] for k in pngs) == len(pngs)


def test_ensure_world_reuses_and_regenerates(tmp_path):
    root = tmp_path / "w"
    logs: list[str] = []
    paths = ensure_world(SMALL, 1, root, log=logs.append)
    probe = root / "content" / "c-faces-0000.png"
    stamp = probe.stat().st_mtime_ns
    marker_stamp = (root / MARKER).stat().st_mtime_ns

    logs.clear()
    assert ensure_world(dict(SMALL, dir="elsewhere"), 1, root, log=logs.append) == paths
    assert any("reusing" in line for line in logs)
    assert probe.stat().st_mtime_ns == stamp
    assert (root / MARKER).stat().st_mtime_ns == marker_stamp

    foreign = root / "content" / "notes.txt"
    foreign.write_text("not the generator's")
    (root / MARKER).unlink()  # an interrupted world: regenerated
    logs.clear()
    ensure_world(SMALL, 1, root, log=logs.append)
    assert (root / MARKER).exists() and not any("reusing" in line for line in logs)
    assert probe.stat().st_mtime_ns != stamp
    assert foreign.read_text() == "not the generator's"  # only the generator's own files go

    changed = dict(SMALL, contents_per_category=2)
    ensure_world(changed, 1, root, progress=False)
    assert len(read_content_manifest(root / "content.parquet")) == 3 * 2
    assert not (root / "content" / "c-faces-0002.png").exists()  # stale files are removed
    assert json.loads((root / MARKER).read_text())["world"]["contents_per_category"] == 2

    before = (root / MARKER).read_text()
    ensure_world(changed, 2, root, progress=False)  # a new seed regenerates too
    assert json.loads((root / MARKER).read_text())["seed"] == 2 and before != (root / MARKER).read_text()


def test_bad_world_config_is_an_error(tmp_path):
    with pytest.raises(WorldError, match="unknown"):
        generate_world(dict(SMALL, categories=["faces", "dragons"]), 0, tmp_path, progress=False)
    with pytest.raises(WorldError, match="contents_per_category"):
        generate_world(dict(SMALL, contents_per_category=0), 0, tmp_path, progress=False)


def test_world_dir_resolves_against_the_config_files_folder(tmp_path):
    child = tmp_path / "sub" / "mine.yaml"
    child.parent.mkdir()
    child.write_text(f"inherit: {DEFAULT_CONFIG}\nworld: {{dir: worlds/w}}\n")
    assert world_dir(load_config(child)) == tmp_path / "sub" / "worlds" / "w"
    assert world_dir(load_config()) == REPO_ROOT / "data" / "tiny-world"


def test_cli_from_another_directory(tmp_path):
    out = tmp_path / "cli-world"
    sheet = tmp_path / "sheet.png"
    cmd = [sys.executable, str(REPO_ROOT / "pipeline" / "synth.py"), "--config",
           str(REPO_ROOT / "configs" / "tiny.yaml"), "--out", "cli-world",
           "world.categories=[flowers,vehicles]", "world.contents_per_category=2",
           "world.groups_per_category=2", "world.images_per_group=1", "world.content_size=24",
           "world.style_size=32", "seed=3", "--contact-sheet", "sheet.png"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert str(out) in run.stdout
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["seed"] == 3
    assert cfg["world"]["categories"] == ["flowers", "vehicles"]
    assert Path(cfg["world"]["dir"]) == out
    assert len(read_content_manifest(out / "content.parquet")) == 4
    assert len(read_style_manifest(out / "styles.parquet")) == 4
    assert (out / MARKER).exists()
    with Image.open(sheet) as im:
        assert im.width > 100 and im.height > 100
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "reusing" in again.stdout


def _features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A colour histogram and texture statistics (high-frequency energy at two scales, contrast)."""
    a = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    q = np.clip((a * 4).astype(np.int64), 0, 3)
    hist = np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64) / q[..., 0].size
    lum = a.mean(-1)
    h, w = lum.shape
    small = lum[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    hf = [np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean() for x in (lum, small)]
    texture = np.array([hf[0] * 4, hf[1] * 4, lum.std() * 2])
    return np.concatenate([hist, texture]), texture


def test_techniques_differ_measurably(tmp_path):
    world_cfg = dict(SMALL, categories=["houses"], contents_per_category=1,
                     groups_per_category=len(TECHNIQUES), images_per_group=3, style_size=64)
    paths = generate_world(world_cfg, 0, tmp_path, progress=False)
    rows = pq.read_table(paths.style_manifest).to_pylist()
    assert {r["technique"] for r in rows} == set(TECHNIQUES)
    feats = [_features(paths.root / r["path"]) for r in rows]
    groups = [r["group"] for r in rows]
    techs = [r["technique"] for r in rows]
    n = len(rows)
    for which in (0, 1):  # colour + texture, then texture statistics alone
        f = np.stack([x[which] for x in feats])
        d = np.linalg.norm(f[:, None] - f[None], axis=-1)
        within = [d[i, j] for i in range(n) for j in range(i + 1, n) if groups[i] == groups[j]]
        between = [d[i, j] for i in range(n) for j in range(i + 1, n) if techs[i] != techs[j]]
        assert np.mean(within) < 0.5 * np.mean(between), (which, np.mean(within), np.mean(between))
    f = np.stack([x[0] for x in feats])
    d = np.linalg.norm(f[:, None] - f[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    assert np.mean([groups[i] == groups[nearest[i]] for i in range(n)]) >= 0.6


def test_palette_tags_say_what_the_stops_look_like():
    assert {"warm palette", "vivid colours", "high contrast"} <= set(palette_tags("fire"))
    assert "cool palette" in palette_tags("ocean") and "cool palette" in palette_tags("indigo")
    greys = palette_tags("monochrome")
    assert not {"warm palette", "cool palette", "vivid colours", "muted colours"} & set(greys)
    assert {"muted colours", "low contrast"} <= set(palette_tags("pastel"))


def test_tags_follow_the_parameters_that_drive_the_rendering():
    def tags(**changes) -> list[str]:
        base = dict(technique="hatching", palette="forest", stroke="medium", grain="smooth",
                    gamma=1.0, outline=0.5)
        return StyleParams(**{**base, **changes}).tags()

    assert tags()[:3] == ["ink hatching", "cross-hatching", "drawing"]
    assert "bold outlines" in tags(outline=0.9) and "faint outlines" in tags(outline=0.1)
    assert not {"bold outlines", "faint outlines"} & set(tags())
    assert not any("outline" in t for t in tags(technique="pointillism", outline=0.9))  # none drawn
    assert "widely spaced lines" in tags(stroke="coarse") and "large tiles" in tags(
        technique="mosaic", stroke="coarse")
    assert "dark moody tones" in tags(gamma=1.3) and "light airy tones" in tags(gamma=0.75)
    assert "high contrast" in tags(technique="woodcut") and "high contrast" not in tags()
    assert "rough texture" in tags(grain="rough")


def test_world_labels_name_technique_palette_and_subject_of_held_out_groups(world, tmp_path):
    import csv
    from world.labels import world_label_rows, write_world_labels
    info = json.loads((Path(world.root) / MARKER).read_text())["groups"]
    excluded = sorted(info)[:4]
    rows = world_label_rows(world.root, excluded)
    assert len(rows) == (9 - 4) * 2 and not {row["id"].rsplit("-", 1)[0] for row in rows} & {
        g.replace("g-", "s-") for g in excluded}
    for row in rows:
        group = "g-" + row["id"][2:].rsplit("-", 1)[0]
        params = info[group]["images"][int(row["id"].rsplit("-", 1)[1])]
        assert (row["technique"], row["palette"], row["subject"]) == (
            params["technique"], params["palette"], info[group]["category"])
        assert Path(row["path"]).is_file()
    columns = write_world_labels(world.root, excluded, tmp_path / "world.csv")
    written = list(csv.DictReader(open(tmp_path / "world.csv")))
    assert [r["id"] for r in written] == [r["id"] for r in rows]
    # only columns where some label is on two images can be queried
    for column in ("technique", "palette", "subject"):
        counts = Counter(r[column] for r in rows)
        assert (column in columns) == (max(counts.values()) > 1)
