"""The main job on one config: stage 1, the published training ablations, evaluation.

    python pipeline/demo.py --config configs/tiny.yaml --out demo [key=value ...]

    python pipeline/demo.py --config data/mine/mine.yaml --out data/mine/run   # your own data

Runs the three user commands exactly as a user would (stage 1 through Ray, each training
variant of ``demo.run`` through torchrun with ``demo.nproc_per_node`` processes, then
evaluation), prints the report and where everything went.
Reads: the config (``data.*_manifest``, or the synthetic world of ``world``, generated when
missing). Writes under ``--out``: ``config.yaml``, ``shards/`` (stage 1), ``runs/<variant>/``
(checkpoints, metrics.jsonl, TensorBoard scalars), ``eval/`` (report.md, report.json, pictures).
The first variant is also evaluated before its first step (``<variant>_step0``), so the report
shows what training changed.
Every step resumes: a rerun skips complete shards and finished training runs.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, pipeline/ is first on sys.path and would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow the stylize package

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

from common.config import (DEFAULT_CONFIG, REPO_ROOT, ConfigError, add_config_args, load_config,  # noqa: E402
                           save_config)
from common.schema import Config  # noqa: E402


class DemoError(RuntimeError):
    pass


def _run(step: str, command: list[str]) -> float:
    """Run one user command, streaming its output; returns its wall time."""
    print(f"\n=== {step}: {' '.join(command)}", flush=True)
    start = time.time()
    result = subprocess.run(command)
    if result.returncode != 0:
        raise DemoError(f"{step} failed with exit code {result.returncode}")
    seconds = time.time() - start
    print(f"=== {step} finished in {seconds:.0f}s", flush=True)
    return seconds


def _torchrun() -> list[str]:
    launcher = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    return [launcher] if launcher else [sys.executable, "-m", "torch.distributed.run"]


def variant_overrides(cfg: Config, name: str) -> list[str]:
    try:
        return list(cfg.demo.variants[name])
    except KeyError:
        known = ", ".join(cfg.demo.variants)
        raise DemoError(f"demo.run names variant '{name}', not in demo.variants ({known})") from None


def train_styles_per_group(cfg: Config) -> dict[str, int]:
    """Styles per group in the train split stage 1 will write (its plan, from the manifests)."""
    from pipeline.runner import plan_inputs
    from shards.schema import TRAIN_SPLIT
    plan, _ = plan_inputs(cfg)
    return Counter(sample.group for shard in plan.shards if shard.split == TRAIN_SPLIT
                   for sample in shard.groups)


def check_variants(config: str, overrides: list[str], cfg: Config) -> None:
    """Every variant of ``demo.run`` can fill its batches from the train split: checked before
    stage 1, so a short collection stops the run before any work, naming what to change."""
    from train.data import batch_shortfall
    try:
        counts = train_styles_per_group(cfg)
    except ValueError:   # a ManifestError among them: bad inputs, which stage 1 names (file, row)
        return
    problems = []
    for name in cfg.demo.run:
        variant = load_config(config, overrides + variant_overrides(cfg, name))
        shortfall = batch_shortfall(variant.train, counts)
        if shortfall:
            problems.append(f"variant {name}: {shortfall} (e.g. in demo.variants.{name})")
    if problems:
        raise DemoError("; ".join(problems))


def run_demo(config: str, overrides: list[str], out: Path) -> dict:
    cfg = load_config(config, overrides)
    check_variants(config, overrides, cfg)
    out = out.resolve()
    save_config(cfg, out)
    shards, runs, report = out / "shards", out / "runs", out / "eval"
    common = ["--config", config]
    timings = {"stage1": _run("stage 1", [sys.executable, str(REPO_ROOT / "pipeline/stylize.py"), *common,
                                          "--out", str(shards), *overrides])}
    checkpoints = []
    for name in cfg.demo.run:
        run_dir = runs / name
        resume = ["--resume"] if (run_dir / "checkpoints" / "last.pt").exists() else []
        command = [*_torchrun(), "--standalone", f"--nproc_per_node={cfg.demo.nproc_per_node}",
                   str(REPO_ROOT / "train/main.py"), *common, "--shards", str(shards), "--out", str(run_dir),
                   *resume, *overrides, *variant_overrides(cfg, name)]
        timings[f"train {name}"] = _run(f"train {name}", command)
        checkpoints += ["--checkpoint", f"{name}={run_dir / 'checkpoints' / 'last.pt'}"]
    # The first variant before training too: what training changed, side by side (a run
    # folder from before step-0 checkpoints has none).
    first = cfg.demo.run[0]
    start = runs / first / "checkpoints" / "step-0.pt"
    checkpoints += ["--checkpoint", f"{first}_step0={start}"] if start.is_file() else []
    timings["eval"] = _run("evaluation", [sys.executable, str(REPO_ROOT / "pipeline/eval.py"), *common,
                                          "--shards", str(shards), *checkpoints,
                                          "--out", str(report), *overrides])
    print("\n" + (report / "report.md").read_text())
    print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    print(f"total {sum(timings.values()) / 60:.1f} min; report: {report / 'report.md'}")
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", default="demo", type=Path, help="folder for shards, runs and report")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        # The commands run in this working directory, so relative paths in overrides mean the
        # same in every step.
        run_demo(str(Path(args.config or DEFAULT_CONFIG).resolve()), args.overrides, args.out)
    except (DemoError, ConfigError) as exc:
        print(f"[demo] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
