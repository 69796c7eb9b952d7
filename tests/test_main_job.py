"""The main job end to end on configs/smoke.yaml: the three user commands, as `make demo` runs them."""
import csv
import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_the_three_commands_on_the_smoke_config(ray_env, tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(REPO / "pipeline" / "demo.py"), "--config", str(REPO / "configs" / "smoke.yaml"),
         "--out", str(out), f"world.dir={tmp_path / 'world'}"],
        cwd=tmp_path, env=ray_env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    for step in ("stage 1", "train nst", "train no_nst", "evaluation"):
        assert f"=== {step} finished" in result.stdout
    report = json.loads((out / "eval" / "report.json").read_text())
    assert set(report["models"]) == {"nst", "no_nst", "nst_step0", "vgg_moments"}
    assert set(report["models"]["nst"]) == {"test-colour", "test-whitening", "test-histogram", "crops"}
    # the world's held-out style groups, labelled by technique, palette and subject
    labelled = report["meta"]["labelled"]["loo"]
    with open(out / "eval" / "labelled" / "world.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    queryable = {column for column in ("technique", "palette", "subject")
                 if max(Counter(row[column] for row in rows).values()) > 1}
    assert len(rows) == 6 and queryable and set(labelled) == queryable   # 3 held-out groups x 2
    for column in queryable:
        assert {"nst", "no_nst", "nst_step0", "vgg_moments", "chance"} <= set(labelled[column])
    for run in ("nst", "no_nst"):
        ranks = sorted((out / "runs" / run / "ranks").glob("rank-*.json"))
        assert [json.loads(p.read_text())["steps"] for p in ranks] == [4, 4]
    assert "report:" in result.stdout and (out / "eval" / "report.md").exists()

    # A rerun resumes everything: no shard is rewritten, no training step run, the same report.
    trained = _training_outputs(out / "runs")
    again = subprocess.run(
        [sys.executable, str(REPO / "pipeline" / "demo.py"), "--config", str(REPO / "configs" / "smoke.yaml"),
         "--out", str(out), f"world.dir={tmp_path / 'world'}"],
        cwd=tmp_path, env=ray_env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already complete, 0 to do" in again.stdout
    assert _training_outputs(out / "runs") == trained          # no checkpoint written, no step logged
    for run in ("nst", "no_nst"):
        ranks = sorted((out / "runs" / run / "ranks").glob("rank-*.json"))
        assert [json.loads(p.read_text())["steps_run"] for p in ranks] == [0, 0]
    rerun = json.loads((out / "eval" / "report.json").read_text())
    for key in ("models", "chance"):
        assert rerun[key] == report[key], key
    assert rerun["meta"]["labelled"] == report["meta"]["labelled"]


def _training_outputs(runs: Path) -> dict[str, tuple[int, str]]:
    """Each run's checkpoints and metrics log: modification time (ns) and sha256."""
    files = [*runs.glob("*/checkpoints/*.pt"), *runs.glob("*/metrics.jsonl")]
    return {str(path): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in files}
