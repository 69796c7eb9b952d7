"""Shared fixtures: small real image files and manifests, a bounded local Ray, and a tiny
sentence-transformers folder for the text side of tagging."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
BUCKET = "nststyle-test"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}
sys.path.insert(0, str(TESTS_DIR))  # test helpers such as shard_factory


def _pattern(rng: np.random.Generator, size: int, stripes: bool) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    colours = rng.uniform(0, 255, size=(2, 3))
    if stripes:
        wave = (np.sin(2 * np.pi * rng.uniform(2, 6) * (xx * rng.uniform(-1, 1) + yy)) > 0)
    else:
        cx, cy, r = rng.uniform(0.3, 0.7, size=3)
        wave = (xx - cx) ** 2 + (yy - cy) ** 2 < (r / 2) ** 2
    img = np.where(wave[..., None], colours[0], colours[1])
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def write_images_manifest(folder: Path, kind: str, count: int, size: int, seed: int,
                          groups: int | None = None) -> Path:
    """Write ``count`` JPEGs and a content or style manifest for them; returns the parquet."""
    rng = np.random.default_rng(seed)
    (folder / kind).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        path = folder / kind / f"{kind}{i}.jpg"
        Image.fromarray(_pattern(rng, size, stripes=(kind == "style"))).save(path, quality=92)
        if kind == "content":
            rows.append({"content_id": f"c{i}", "path": f"{kind}/{path.name}", "category": f"k{i % 3}"})
        else:
            rows.append({"style_id": f"s{i}", "path": f"{kind}/{path.name}",
                         "group": f"g{i % groups}" if groups else f"g{i}", "tags": ["test"]})
    manifest = folder / f"{kind}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    return manifest


@pytest.fixture
def small_manifests(tmp_path: Path) -> tuple[Path, Path]:
    """24 content JPEGs (48 px) and 12 style JPEGs (64 px) in 6 groups, with manifests."""
    return (write_images_manifest(tmp_path / "inputs", "content", 24, 48, seed=1),
            write_images_manifest(tmp_path / "inputs", "style", 12, 64, seed=2, groups=6))


@pytest.fixture
def ray_env(tmp_path_factory, monkeypatch) -> dict:
    """Environment for a small local Ray: its own temp folder, no inherited cluster address."""
    tmp = tmp_path_factory.mktemp("ray")
    env = {"TMPDIR": str(tmp), "RAY_TMPDIR": str(tmp), "RAY_OBJECT_STORE_ALLOW_SLOW_STORAGE": "1",
           "RAY_DISABLE_IMPORT_WARNING": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return {**os.environ, **env}


@pytest.fixture(params=["chmod", "read-only fs"])
def read_only_folder(request, tmp_path: Path, monkeypatch) -> Path:
    """An empty folder that takes no writes: made read-only by chmod where that binds (not for
    root, who writes anyway), else by having every file open for writing under it in
    ``common.files`` (the lock and atomic outputs) fail as on a read-only file system."""
    import builtins
    import errno

    import common.files

    folder = tmp_path / "read-only"
    folder.mkdir()
    if request.param == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes into a chmod 555 folder")
        folder.chmod(0o555)
        request.addfinalizer(lambda: folder.chmod(0o755))
        return folder

    def refuse_writes(file, mode="r", *args, **kwargs):
        if Path(file).resolve().is_relative_to(folder) and set(mode) & set("wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(common.files, "open", refuse_writes, raising=False)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a real S3 API on loopback: moto's server, s3fs as the client -----------------------------

@pytest.fixture(scope="session")   # one endpoint: fsspec caches its S3 clients per process
def s3_server():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch) -> str:
    """The bucket's URL, with the S3 client configured by environment variables alone (which
    the processes a test starts inherit)."""
    from common import storage

    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    fs, _ = storage.filesystem(f"s3://{BUCKET}")
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return f"s3://{BUCKET}"


def ray_subprocess_env(root: Path) -> dict[str, str]:
    """The environment of a command a test runs that starts a local Ray: its temp folders
    under ``root``, no inherited cluster address (the test's own variables, S3's, kept)."""
    env = {**os.environ, "TMPDIR": str(root), "RAY_TMPDIR": str(root), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_OBJECT_STORE_ALLOW_SLOW_STORAGE": "1", "RAY_DISABLE_IMPORT_WARNING": "1"}
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """Stage 1 on the smoke config, as a user runs it: the world and the shards, local."""
    root = tmp_path_factory.mktemp("smoke")
    env = ray_subprocess_env(root)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "pipeline" / "stylize.py"), "--config",
                             str(SMOKE), "--out", str(root / "shards"), f"world.dir={root / 'world'}"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "shards": root / "shards", "world": root / "world"}


# The fake text encoder's WordPiece vocabulary: tags made of these words embed apart.
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "water", "##colour", "##color", "oil",
         "paint", "##ing", "pixel", "art", "ink", "wash", "bold", "line", "soft", "pastel"]


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with a WordPiece vocabulary, mean pooling and
    normalisation, saved as a sentence-transformers folder by the libraries' own functions."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("text")
    (root / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    config = BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        bert = BertModel(config)
    bert.save_pretrained(root / "bert")
    BertTokenizer(vocab=str(root / "vocab.txt")).save_pretrained(root / "bert")
    model = SentenceTransformer(modules=[Transformer(str(root / "bert")),
                                         Pooling(32, pooling_mode="mean"), Normalize()])
    model.save(str(root / "tiny-st"))
    return root / "tiny-st"
