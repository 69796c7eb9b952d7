"""The pipeline benchmark runs end to end on the smoke config and writes its figures."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pipeline_benchmark_prints_and_saves_its_figures(ray_env, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_pipeline.py"), "--config",
         str(REPO / "configs" / "smoke.yaml"), "--out", str(out), "--train-steps", "2",
         f"world.dir={tmp_path / 'world'}"],
        cwd=tmp_path, env=ray_env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    figures = json.loads((out / "bench.json").read_text())
    for key in ("bare_methods", "stage1_1", "stage1_2"):
        assert figures[key]["images"] > 0 and figures[key]["images_per_s"] > 0
    assert figures["stage1_1"]["images"] == figures["stage1_2"]["images"]
    assert all(figures["training"][k] > 0 for k in ("shards", "tensors", "on_the_fly"))
    assert figures["eval_seconds"] > 0 and (out / "eval" / "report.json").exists()
    assert "stage 1 scaling, 2 actors / 1 actor" in result.stdout
