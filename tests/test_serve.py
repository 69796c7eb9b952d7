"""The style-search page's API (serve/, through Flask's test client) on a real collection:
queries by id, upload and words, two models side by side, the map and its cache, thumbnails,
and everything it must refuse (ids out of the collection, a symlink out, bad uploads, a model
or head of another hash)."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from common.config import load_config
from conftest import REPO_ROOT
from pipeline import search as search_command
from serve import ServeOptions, load_app, open_spaces
from serve.atlas import MAP_FILE
from serve.labels import load_labels
from serve_factory import GROUP_TAGS, PER_GROUP, SMALL_EVAL, make_collection
from stylecode import StyleCodeError
from stylecode.index import load_index
from stylecode.store import read_folder
from tagging import HeadConfig, TagHead, TextEncoder, train_head


@pytest.fixture(scope="module")
def collection(tmp_path_factory, fake_model):
    return make_collection(tmp_path_factory.mktemp("serve"), fake_model)


@pytest.fixture(scope="module")
def client(collection, fake_model):
    app = load_app(collection.indexes, heads=[collection.head], text_model=fake_model,
                   options=ServeOptions(k=5, max_upload_bytes=64 * 1024, max_upload_pixels=200 * 200))
    return app.test_client()


def _ids(answer: dict, model: str) -> list[str]:
    return [item["id"] for item in answer["models"][model]["results"]]


def test_info_lists_both_models_and_what_each_can_do(client):
    info = client.get("/api/info").get_json()
    assert [(m["name"], m["kind"], m["upload"], m["words"]) for m in info["models"]] == [
        ("colour_hist", "flat", True, True), ("vgg_moments", "hnsw", True, False)]
    assert info["count"] == 3 * PER_GROUP + 1 and info["columns"] == ["group"] and info["k"] == 5
    page = client.get("/api/items?offset=14&limit=10").get_json()
    assert page["total"] == 16 and [i["id"] for i in page["items"]] == ["g2/img3.jpg", "g2/img4.jpg"]


def test_query_by_id_ranks_like_exact_search_for_both_models(client, collection):
    answer = client.get("/api/query?id=g1/img2.jpg&k=6").get_json()
    assert answer["query"]["id"] == "g1/img2.jpg" and answer["query"]["labels"] == {"group": ["g1"]}
    for model, index in zip(("colour_hist", "vgg_moments"), collection.indexes):
        embeddings = read_folder(index.parent)
        own = embeddings.codes[embeddings.ids.index("g1/img2.jpg")]
        results = answer["models"][model]["results"]
        exact = embeddings.codes @ own
        # the six best of exact search (HNSW is exact on 16 codes), each with its own cosine
        np.testing.assert_allclose([r["score"] for r in results], np.sort(exact)[::-1][:6], atol=1e-4)
        np.testing.assert_allclose([exact[embeddings.ids.index(r["id"])] for r in results],
                                   [r["score"] for r in results], atol=1e-4)
        assert results[0]["id"] == "g1/img2.jpg" and results[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert results[1]["thumb"] == f"/thumb/{results[1]['id']}"
    # the palette model finds the query's group first
    assert {i.split("/")[0] for i in _ids(answer, "colour_hist")[:PER_GROUP]} == {"g1"}


def test_query_by_upload_embeds_with_each_model(client, collection):
    data = (collection.folder / "g2" / "img1.jpg").read_bytes()
    answer = client.post("/api/query?k=3", data={"image": (io.BytesIO(data), "mine.jpg")}).get_json()
    assert answer["query"] == {"upload": "upload mine.jpg"}
    for model in ("colour_hist", "vgg_moments"):
        first = answer["models"][model]["results"][0]
        assert first["id"] == "g2/img1.jpg" and first["score"] == pytest.approx(1.0, abs=1e-4)
    # another size and format: still an image of its palette's group
    png = io.BytesIO()
    with Image.open(collection.folder / "g0" / "img3.jpg") as image:
        image.resize((80, 64)).save(png, format="PNG")
    png.seek(0)
    answer = client.post("/api/query", data={"image": (png, "small.png")}).get_json()
    assert _ids(answer, "colour_hist")[0].startswith("g0/")


def test_query_by_words_ranks_like_the_head(client, collection, fake_model):
    answer = client.get("/api/words?q=pixel art&k=5").get_json()
    embeddings = read_folder(collection.indexes[0].parent)
    head = TagHead.load(collection.head, TextEncoder(fake_model))
    expected = np.argsort(-head.score(embeddings.codes, ["pixel art"])[:, 0], kind="stable")[:5]
    assert _ids(answer, "colour_hist") == [embeddings.ids[p] for p in expected]
    assert "no tagging head for model 'vgg_moments'" in answer["models"]["vgg_moments"]["error"]
    # trained on three palettes' tags: the words find their group
    assert sum(i.startswith("g2/") for i in _ids(answer, "colour_hist")) >= 3
    assert client.get("/api/words?q=%20").status_code == 400


def test_the_map_is_computed_once_and_redone_when_the_index_changes(client, collection, fake_model):
    answer = client.get("/api/map?model=vgg_moments").get_json()
    points = answer["points"]
    assert len(points) == 16 and answer["legend"] == ["g0", "g1", "g2"]
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in points)
    cached = collection.indexes[1] / "_serve" / MAP_FILE
    saved = json.loads(cached.read_text())
    # a new app over the same index reads the map back, not recomputing it
    again = load_app(collection.indexes[1:], uploads=False).test_client()
    assert again.get("/api/map").get_json()["points"] == points
    assert cached.stat().st_mtime_ns == cached.stat().st_mtime_ns and json.loads(cached.read_text()) == saved
    # rebuilt with other parameters: another index, another map key
    assert search_command.main(["build", "--embeddings", str(collection.indexes[1].parent),
                                "--kind", "hnsw", "search.hnsw_neighbours=8", *SMALL_EVAL]) == 0
    rebuilt = load_app(collection.indexes[1:], uploads=False).test_client()
    assert len(rebuilt.get("/api/map").get_json()["points"]) == 16
    assert json.loads(cached.read_text())["key"] != saved["key"]
    assert client.get("/api/map?model=nope").status_code == 404


def test_images_and_thumbnails_are_served_once_made(client, collection):
    image = client.get("/image/g0/img1.jpg")
    assert image.status_code == 200 and image.data == (collection.folder / "g0" / "img1.jpg").read_bytes()
    thumb = client.get("/thumb/g0/img1.jpg")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(thumb.data)) as small:
        assert max(small.size) == 160 and small.format == "JPEG"   # 48 px images, contained
    cache = collection.indexes[0] / "_serve" / "thumbs"
    made = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert client.get("/thumb/g0/img1.jpg").data == thumb.data
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == made


@pytest.mark.parametrize("url, status", [
    ("/api/query?id=nope.jpg", 404),
    ("/api/query?id=g0/img1.jpg&k=0", 400),
    ("/api/query?id=g0/img1.jpg&k=abc", 400),
    ("/api/query?id=g0/img1.jpg&k=101", 400),
    ("/thumb/g0/nope.jpg", 404),
    ("/image/../private/secret.jpg", 400),
    ("/image/g0/../../private/secret.jpg", 400),
    ("/thumb/%2E%2E/private/secret.jpg", 400),
    ("/image/%2Fetc%2Fpasswd", 404),   # no route: an id in a URL path never starts with /
    ("/image//etc/passwd", 404),
    ("/api/query?id=../private/secret.jpg", 400),
    ("/api/query?id=/etc/passwd", 400),
    ("/image/g0/link.jpg", 403),       # indexed, but a symlink to a file outside the collection
    ("/thumb/g0/link.jpg", 403),
])
def test_what_leaves_the_collection_is_refused(client, url, status):
    response = client.get(url)
    assert response.status_code == status and "error" in response.get_json()
    assert b"\xff\xd8" not in response.data   # no JPEG bytes of any kind


def test_only_this_machine_s_names_are_answered(client):
    assert client.get("/api/info", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    rebound = client.get("/api/info", headers={"Host": "evil.example:8765"})   # DNS rebinding
    assert rebound.status_code == 400


def test_bad_uploads_are_refused(client, collection):
    too_big = io.BytesIO(np.random.default_rng(0).bytes(70 * 1024))
    response = client.post("/api/query", data={"image": (too_big, "big.jpg")})
    assert response.status_code == 413 and "Too Large" in response.get_json()["error"]
    broken = client.post("/api/query", data={"image": (io.BytesIO(b"\xff\xd8 not a jpeg"), "b.jpg")})
    assert broken.status_code == 400 and "upload b.jpg: cannot read the image" in broken.get_json()["error"]
    wide = io.BytesIO()
    Image.new("RGB", (400, 300), (9, 9, 9)).save(wide, format="PNG")   # small file, many pixels
    wide.seek(0)
    bomb = client.post("/api/query", data={"image": (wide, "wide.png")})
    assert bomb.status_code == 400 and "over the limit of 40000" in bomb.get_json()["error"]
    assert client.post("/api/query", data={}).status_code == 400


def test_a_model_or_head_of_another_hash_is_refused(collection, fake_model, tmp_path):
    other = load_config(None, [*SMALL_EVAL, "eval.colour_bins=5"])   # another colour_hist
    with pytest.raises(StyleCodeError, match=r"was built with model 'colour_hist' .*the query model"):
        open_spaces(collection.indexes[:1], cfg=other)
    embeddings = read_folder(collection.indexes[0].parent)   # same codes, another model's hash
    stranger = train_head(embeddings.codes, [["ink wash"]] * len(embeddings.ids), TextEncoder(fake_model),
                          HeadConfig(epochs=1), image_model="x", image_model_hash="fedcba9876543210")
    stranger.save(tmp_path / "x.pt")
    own = load_index(collection.indexes[0]).info.hash
    with pytest.raises(StyleCodeError, match=rf"x\.pt: head trained on image model 'x' hash "
                                             rf"fedcba9876543210, not {own}"):
        open_spaces(collection.indexes[:1], heads=[tmp_path / "x.pt"], text_model=fake_model,
                    uploads=False)


def test_indexes_of_two_collections_are_not_put_side_by_side(collection, tmp_path):
    moved = tmp_path / "art"   # a copy: the same ids, other files
    shutil.copytree(collection.folder, moved, symlinks=True)
    from serve_factory import embed
    embed(moved, "baseline:colour_hist", tmp_path / "emb", collection.cfg)
    assert search_command.main(["build", "--embeddings", str(tmp_path / "emb"), *SMALL_EVAL]) == 0
    assert load_index(tmp_path / "emb" / "index").ids == load_index(collection.indexes[0]).ids
    with pytest.raises(StyleCodeError, match="are of different collections"):
        open_spaces([collection.indexes[0], tmp_path / "emb" / "index"], uploads=False)


def test_labels_from_a_table_colour_the_map(collection, tmp_path):
    table = tmp_path / "labels.csv"
    rows = ["path,palette,tags"] + [
        f"{collection.folder / g / f'img{i}.jpg'},{'cool' if g == 'g0' else 'warm'},{GROUP_TAGS[g][0]}"
        for g in GROUP_TAGS for i in range(PER_GROUP)]
    table.write_text("\n".join(rows) + "\n")
    index = load_index(collection.indexes[0])
    labels = load_labels(table, index.ids, index.paths, colour_by="tags")
    assert labels.of("g1/img0.jpg") == {"palette": ["warm"], "tags": ["oil painting"]}
    assert labels.colour("g0/img2.jpg") == "ink wash" and labels.colour("g0/link.jpg") == ""
    with pytest.raises(StyleCodeError, match="not a label column"):
        load_labels(table, index.ids, index.paths, colour_by="artist")


def test_the_command_explains_itself_and_refuses_a_missing_index(tmp_path, capsys):
    # Run as a script (from elsewhere), pipeline/ comes first on sys.path, where serve.py would
    # shadow the serve package; the script puts the repository root first.
    helped = subprocess.run([sys.executable, str(REPO_ROOT / "pipeline" / "serve.py"), "--help"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "127.0.0.1" in helped.stdout and "--demo" in helped.stdout
    probe = (f"import sys, importlib.util; sys.path.insert(0, {str(REPO_ROOT / 'pipeline')!r}); "
             "print(importlib.util.find_spec('serve').origin)")
    shadowed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert shadowed.stdout.strip().endswith("pipeline/serve.py"), "the guarded clash is real"
    from pipeline import serve as serve_command
    assert serve_command.main(["--index", str(tmp_path)]) == 2
    assert "is not a search index" in capsys.readouterr().err
    assert serve_command.main([]) == 2
    assert "give --index (once or twice) or --demo" in capsys.readouterr().err
