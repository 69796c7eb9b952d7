"""pipeline/embed.py (real Ray Data, 2 actors) and pipeline/search.py: files, reruns, failures,
exact and approximate indexes, search by image and by words, and the errors users meet."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import stylecode
from common.config import load_config
from conftest import REPO_ROOT, write_images_manifest
from pipeline import embed as embed_command
from pipeline import search as search_command
from stylecode.collection import find_images
from stylecode.index import load_index
from stylecode.store import ModelInfo, file_path, read_folder, write_file
from tagging import HeadConfig, TextEncoder, train_head
from test_eval_run import MODEL_OVERRIDES, _write_checkpoint

EMBED_OVERRIDES = ["embed.rows_per_file=8", "embed.batch_size=4", "embed.ray.num_actors=2",
                   "embed.ray.object_store_mb=100", "embed.progress_every_s=0"]


def _run(script: str, args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "pipeline" / script), *args], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def _collection(root: Path) -> Path:
    """20 JPEGs, one PNG in a subfolder, an unreadable .jpg and a text file (not an image)."""
    folder = write_images_manifest(root, "content", 20, 48, seed=4).parent / "content"
    (folder / "sub").mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / "sub" / "red.PNG")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.slow
def test_embed_rerun_and_search_by_image(ray_env, tmp_path, capsys):
    folder = _collection(tmp_path)
    checkpoint = _write_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", MODEL_OVERRIDES)
    out = tmp_path / "emb"
    args = ["--input", str(folder), "--checkpoint", str(checkpoint), "--out", str(out), *EMBED_OVERRIDES]
    first = _run("embed.py", args, ray_env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "22 images" in first.stdout and "on 2 actors" in first.stdout
    assert "images/s | failures 1" in first.stdout and "failed: " in first.stdout

    # 22 images sorted by id into files of 8; the broken one recorded with its reason.
    model = stylecode.load(checkpoint, device="cpu")
    embeddings = read_folder(out)
    assert embeddings.info == ModelInfo("run", model.hash, 16) and embeddings.failed == 1
    assert embeddings.ids == sorted(embeddings.ids) and "sub/red.PNG" in embeddings.ids
    assert len(embeddings.ids) == 21 and "notes.txt" not in embeddings.ids
    np.testing.assert_allclose(embeddings.codes, model.embed(embeddings.paths), atol=1e-5)
    table = pq.read_table(file_path(out, 0))
    broken = table.to_pylist()[0]
    assert broken["id"] == "broken.jpg" and broken["status"] == "failed"
    assert broken["embedding"] is None and "broken.jpg" in broken["reason"]
    assert [pq.read_metadata(file_path(out, n)).num_rows for n in range(3)] == [8, 8, 6]

    # A deleted and a damaged file are redone; complete files are left alone.
    untouched = file_path(out, 0).stat().st_mtime_ns
    file_path(out, 1).unlink()
    damaged = file_path(out, 2)
    damaged.write_bytes(damaged.read_bytes()[:100])
    second = _run("embed.py", [*args, "embed.ray.num_actors=1"], ray_env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "1 already complete, 2 to do" in second.stdout and "redoing a damaged file" in second.stdout
    assert file_path(out, 0).stat().st_mtime_ns == untouched
    np.testing.assert_array_equal(read_folder(out).codes, embeddings.codes)

    # All complete: nothing to do, no Ray; another model's files are not mixed in.
    assert embed_command.main(args) == 0
    state = json.loads((out / "_embed.json").read_text())
    assert state["last_run"]["images"] == 0 and state["model"]["hash"] == model.hash
    assert embed_command.main([*args[:2], "--baseline", "colour_hist", *args[4:]]) == 2
    assert "holds embeddings of another model" in capsys.readouterr().err

    # Index it and search with a collection image, as a user does (a script, from elsewhere).
    assert search_command.main(["build", "--embeddings", str(out)]) == 0
    query = _run("search.py", ["query", "--index", str(out / "index"), "--image",
                               str(folder / "content3.jpg"), "--k", "4", "--sheet", "sheet.png"],
                 ray_env, tmp_path)
    assert query.returncode == 0, query.stderr
    first_hit = query.stdout.splitlines()[1].split()
    assert first_hit[:3] == ["1", "1.0000", "content3.jpg"]
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width > 5 * 128 and sheet.height > 128


def test_collections_from_a_folder_a_glob_and_manifests(tmp_path):
    manifest = write_images_manifest(tmp_path, "content", 3, 16, seed=0)
    folder = tmp_path / "content"
    paths = [str(folder / f"content{i}.jpg") for i in range(3)]
    found = find_images(str(folder), [".JPG"])
    assert [(i.id, i.path) for i in found] == [(f"content{i}.jpg", paths[i]) for i in range(3)]
    assert [i.id for i in find_images(str(tmp_path / "*" / "content[12].jpg"), [])] == [
        "content/content1.jpg", "content/content2.jpg"]   # ids relative to the glob's fixed part
    assert [(i.id, i.path) for i in find_images(str(manifest), [])] == [
        (f"c{i}", paths[i]) for i in range(3)]
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": ["b", "a"], "path": ["content/content1.jpg", paths[0]]}), plain)
    assert [(i.id, i.path) for i in find_images(str(plain), [])] == [("a", paths[0]), ("b", paths[1])]
    pq.write_table(pa.table({"name": ["a"], "path": [paths[0]]}), plain)
    with pytest.raises(stylecode.StyleCodeError, match=f"{plain}: missing column"):
        find_images(str(plain), [])


def _write_codes(folder: Path, codes: np.ndarray, info: ModelInfo, per_file: int = 50,
                 failed: tuple[int, ...] = ()) -> list[str]:
    """Embedding files as pipeline/embed.py writes them (rows in ``failed`` failed)."""
    ids = [f"img{i:04d}" for i in range(len(codes))]
    for number, start in enumerate(range(0, len(codes), per_file)):
        rows = range(start, min(start + per_file, len(codes)))
        write_file(file_path(folder, number), [ids[i] for i in rows],
                   [str(folder / f"{ids[i]}.jpg") for i in rows], codes[start:start + per_file],
                   ["unreadable" if i in failed else "" for i in rows], info)
    return ids


def _clustered_codes(count: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, count)
    codes = rng.normal(size=(clusters, dim))[labels] + 0.6 * rng.normal(size=(count, dim))
    return (codes / np.linalg.norm(codes, axis=1, keepdims=True)).astype(np.float32), labels


def test_exact_index_equals_brute_force(tmp_path):
    codes, _ = _clustered_codes(130, 12, 5, seed=0)
    ids = _write_codes(tmp_path, codes, ModelInfo("m", "0123456789abcdef", 12), failed=(7, 70))
    assert search_command.main(["build", "--embeddings", str(tmp_path)]) == 0
    index = load_index(tmp_path / "index")
    kept = [i for i in range(130) if i not in (7, 70)]
    assert index.ids == [ids[i] for i in kept]
    queries = np.random.default_rng(1).normal(size=(6, 12)).astype(np.float32)
    scores, positions = index.search(queries, 10)
    brute = queries @ codes[kept].T
    np.testing.assert_array_equal(positions, np.argsort(-brute, axis=1)[:, :10])
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :10], rtol=1e-5)


@pytest.mark.parametrize("kind, overrides, least", [
    ("hnsw", ["search.hnsw_neighbours=8", "search.hnsw_ef_search=32"], 0.9),
    ("ivfpq", ["search.pq_bytes=8", "search.pq_bits=6", "search.nprobe=4"], 0.3)])
def test_approximate_index_recall_is_measured(tmp_path, kind, overrides, least):
    codes, _ = _clustered_codes(2000, 32, 20, seed=2)
    _write_codes(tmp_path, codes, ModelInfo("m", "0123456789abcdef", 32), per_file=500)
    args = ["build", "--embeddings", str(tmp_path), "--kind", kind, "search.k=10",
            "search.recall_queries=50", "search.threads=1", *overrides]
    assert search_command.main(args) == 0
    index = load_index(tmp_path / "index")
    recall = index.meta["recall"]
    # The same measurement by hand: the seed-0 sample of 50 codes, each query's own code left out.
    picked = np.random.default_rng(0).choice(2000, size=50, replace=False)
    exact = np.argsort(-(codes[picked] @ codes.T), axis=1)[:, 1:11]
    found = index.search(codes[picked], 11)[1]
    hits = [len(set(e) & (set(f) - {q})) / 10 for e, f, q in zip(exact, found, picked)]
    assert recall == {"k": 10, "queries": 50, "recall": pytest.approx(np.mean(hits))}
    assert least <= recall["recall"] <= 1.0


TAGS = ["ink wash", "oil painting", "pixel art", "soft pastel"]


def test_search_by_words_ranks_like_the_head(tmp_path, fake_model):
    codes, labels = _clustered_codes(120, 16, 4, seed=3)
    info = ModelInfo("m", "0123456789abcdef", 16)
    ids = _write_codes(tmp_path, codes, info)
    text = TextEncoder(fake_model)
    head = train_head(codes, [[TAGS[label]] for label in labels], text, HeadConfig(epochs=20),
                      image_model="m", image_model_hash=info.hash)
    head.save(tmp_path / "heads" / "m.pt")
    assert search_command.main(["build", "--embeddings", str(tmp_path)]) == 0
    args = ["query", "--index", str(tmp_path / "index"), "--text", "ink wash", "--head",
            str(tmp_path / "heads" / "m.pt"), "--text-model", str(fake_model), "--k", "5",
            "--sheet", str(tmp_path / "words.png")]
    rows = search_command.query_command(search_command.parse_args(args), load_config())
    expected = np.argsort(-head.score(codes, ["ink wash"])[:, 0], kind="stable")[:5]
    assert [item_id for _, _, item_id in rows[0].results] == [ids[i] for i in expected]
    assert (tmp_path / "words.png").is_file()

    other = train_head(codes, [[TAGS[label]] for label in labels], text, HeadConfig(epochs=1),
                       image_model="x", image_model_hash="fedcba9876543210")
    other.save(tmp_path / "heads" / "x.pt")
    args[args.index(str(tmp_path / "heads" / "m.pt"))] = str(tmp_path / "heads" / "x.pt")
    with pytest.raises(stylecode.StyleCodeError, match=r"x\.pt: head trained on image model 'x'.*"
                                                       r"index .*0123456789abcdef"):
        search_command.query_command(search_command.parse_args(args), load_config())


def test_errors_name_the_file(tmp_path, capsys):
    codes, _ = _clustered_codes(60, 8, 3, seed=4)
    _write_codes(tmp_path / "emb", codes, ModelInfo("m", "0123456789abcdef", 8), per_file=20)
    assert search_command.main(["build", "--embeddings", str(tmp_path / "emb")]) == 0
    index = str(tmp_path / "emb" / "index")

    unreadable = tmp_path / "query.jpg"
    unreadable.write_bytes(b"\xff\xd8 truncated")
    assert search_command.main(["query", "--index", index, "--image", str(unreadable)]) == 2
    assert f"{unreadable}: cannot read the image" in capsys.readouterr().err

    assert search_command.main(["query", "--index", index, "--image", str(_png(tmp_path)),
                                "--baseline", "colour_hist"]) == 2
    err = capsys.readouterr().err
    assert "was built with model 'm' (hash 0123456789abcdef" in err and "'colour_hist'" in err

    shard = file_path(tmp_path / "emb", 1)
    shard.write_bytes(shard.read_bytes()[:-40])   # truncated: the footer is gone
    assert search_command.main(["build", "--embeddings", str(tmp_path / "emb")]) == 2
    assert f"{shard}: not a readable embeddings file" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    for source in (str(empty), str(tmp_path / "*.webp")):
        assert embed_command.main(["--input", source, "--baseline", "colour_hist",
                                   "--out", str(tmp_path / "o")]) == 2
        assert "nothing to embed" in capsys.readouterr().err


def _png(folder: Path) -> Path:
    Image.new("RGB", (32, 32), (10, 200, 10)).save(folder / "green.png")
    return folder / "green.png"


@pytest.mark.parametrize("k", ["0", "-3", "two"])
def test_k_below_one_is_refused_before_any_search(tmp_path, capsys, k):
    codes, _ = _clustered_codes(30, 8, 3, seed=5)
    _write_codes(tmp_path / "emb", codes, ModelInfo("m", "0123456789abcdef", 8))
    assert search_command.main(["build", "--embeddings", str(tmp_path / "emb")]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:   # argparse: usage and the message, exit 2
        search_command.main(["query", "--index", str(tmp_path / "emb" / "index"),
                             "--image", str(_png(tmp_path)), "--k", k])
    assert exited.value.code == 2
    expected = "k must be a whole number, got 'two'" if k == "two" else f"k must be ≥ 1, got {k}"
    assert f"argument --k: {expected}" in capsys.readouterr().err


def test_an_index_of_foreign_embeddings_asks_for_its_model(tmp_path, capsys):
    codes, _ = _clustered_codes(30, 8, 3, seed=6)
    _write_codes(tmp_path / "emb", codes, ModelInfo("m", "0123456789abcdef", 8))  # no _embed.json
    assert search_command.main(["build", "--embeddings", str(tmp_path / "emb")]) == 0
    capsys.readouterr()
    assert search_command.main(["query", "--index", str(tmp_path / "emb" / "index"),
                                "--image", str(_png(tmp_path))]) == 2
    assert "does not record its model" in capsys.readouterr().err
