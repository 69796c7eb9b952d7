"""`pipeline/serve.py --demo DEMO`: the held-out test images of a demo folder written out with
their labels, embedded by the NST checkpoint and a baseline (pipeline/embed.py on Ray), indexed
and served, in one command."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from common.config import load_config, save_config
from conftest import REPO_ROOT
from serve.demo import LABELS, extract_held_out
from shard_factory import make_split
from shards.reader import iter_samples
from test_eval_run import MODEL_OVERRIDES, _write_checkpoint

TAGS = (["ink wash"], ["oil painting"])


def _demo_folder(root: Path) -> Path:
    """What `make demo` leaves that --demo reads: shards with a held-out split, the NST run's
    checkpoint and the evaluation's config."""
    demo = root / "demo"
    make_split(demo / "shards", "test-m2", n_styles=4, per_style=3, methods=("m2",), held_out="m2",
               tags=TAGS, styles_per_group=2)
    _write_checkpoint(demo / "runs" / "nst" / "checkpoints" / "last.pt", MODEL_OVERRIDES)
    save_config(load_config(None, ["eval.image_size=32", "eval.moments_max_layer=relu2_1",
                                   "embed.batch_size=4", "embed.ray.num_actors=1",
                                   "embed.ray.object_store_mb=100", "embed.progress_every_s=0"]),
                demo / "eval")
    return demo


def test_the_held_out_images_are_written_with_their_labels(tmp_path):
    demo = _demo_folder(tmp_path)
    table = extract_held_out(demo / "shards", tmp_path / "out")
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    samples = list(iter_samples(demo / "shards" / "test-m2"))
    assert len(rows) == 12 and set(rows[0]) == {"path", "style", "group", "tags", "content", "method"}
    assert {row["style"] for row in rows} == {s.style_id for s in samples}
    assert {row["tags"] for row in rows} == {"ink wash", "oil painting"}
    first = samples[0]
    row = next(r for r in rows if r["style"] == first.style_id)
    assert row["path"] == f"images/s{first.style_id}.x0.jpg" and row["group"] == first.group
    from common.images import open_image
    assert open_image(tmp_path / "out" / row["path"]).size == first.images[0].size
    mtime = table.stat().st_mtime_ns
    assert extract_held_out(demo / "shards", tmp_path / "out") == table   # done: kept as it is
    assert table.stat().st_mtime_ns == mtime and table.name == LABELS


@pytest.mark.slow
def test_one_command_serves_the_demo(ray_env, tmp_path):
    demo = _demo_folder(tmp_path)
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "pipeline" / "serve.py"), "--demo",
                                    str(demo), "--port", "0"], stdout=out, stderr=subprocess.STDOUT,
                                   cwd=tmp_path, env=ray_env)
    try:
        url = None
        deadline = time.time() + 400
        while url is None and time.time() < deadline and process.poll() is None:
            found = [line for line in log.read_text().splitlines() if "serving on " in line]
            url = found[0].split("serving on ")[1].split()[0] if found else None
            time.sleep(0.5)
        assert url, log.read_text()[-3000:]
        with urllib.request.urlopen(url + "api/info", timeout=30) as response:
            info = json.loads(response.read())
        assert [m["name"] for m in info["models"]] == ["nst", "vgg_moments"] and info["count"] == 12
        assert info["columns"] == ["style", "group", "tags", "content", "method"]
        first = sorted(p.name for p in (demo / "serve" / "images").iterdir())[0]
        with urllib.request.urlopen(f"{url}api/query?id={first}&k=3", timeout=30) as response:
            answer = json.loads(response.read())
        for model in ("nst", "vgg_moments"):
            assert answer["models"][model]["results"][0]["id"] == first
    finally:
        process.terminate()
        process.wait(timeout=30)
    printed = log.read_text()
    assert "=== embed emb-nst" in printed and "=== index emb-vgg_moments" in printed
