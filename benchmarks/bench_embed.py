"""Embed benchmark: pipeline/embed.py's images/s against the bare model, measured in one run.

    python benchmarks/bench_embed.py --out demo/bench-embed [--images 600] [--checkpoint PATH] [key=value ...]

1. Bare: the model's forward pass on the same images, opened beforehand, batched in this
   process with as many torch threads as the command's actors have CPUs together.
2. The command, run as a user runs it (a subprocess), by default with one actor
   (embed.ray.num_actors=1, so both sides use one CPU and the ratio is the pipeline's cost, not
   thread scaling; override it to compare more): images/s from Ray's start to the last file
   (Ray, actor and model start-up included) and after the first batch (steady state: opening
   the images, Ray Data, writing the files; the first batch pays the first call's allocations,
   as the bare pass's warm-up call does). Target: steady state >= 0.9x bare.
Without --checkpoint the model is the config's encoder with random weights (the tiny config:
ViT + VGG moments at 64 px), saved as a training checkpoint. Figures go to <out>/bench.json.
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root wins imports

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import stylecode  # noqa: E402
from common.config import REPO_ROOT, add_config_args, load_config, public  # noqa: E402
from common.files import write_json  # noqa: E402
from common.images import open_image  # noqa: E402
from common.schema import Config  # noqa: E402
from models.checkpoint import save_checkpoint  # noqa: E402
from models.encoder import build_encoder  # noqa: E402


def write_collection(folder: Path, count: int, size: int, seed: int) -> list[Path]:
    """``count`` seeded JPEGs: smooth colour fields with noise, ``size`` pixels square."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 1, size)[:, None, None]
    paths = []
    for i in range(count):
        low, high = rng.uniform(0, 255, (2, 1, 1, 3))
        pixels = low + (high - low) * ramp + rng.normal(0, 12, (size, size, 3))
        path = folder / f"img{i:05d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def random_checkpoint(cfg: Config, path: Path) -> Path:
    torch.manual_seed(cfg.seed)
    return save_checkpoint(path, {"model": build_encoder(cfg).state_dict(), "config": public(cfg), "step": 0})


def bench_bare(checkpoint: Path, paths: list[Path], cfg: Config) -> dict:
    rcfg = cfg.embed.ray
    torch.set_num_threads(rcfg.num_actors * rcfg.num_cpus_per_actor)
    model = stylecode.load(checkpoint, device="cpu")
    images = [open_image(path) for path in paths]
    batch = cfg.embed.batch_size
    model.embed(images[:batch], batch_size=batch)   # warm-up: first-call allocations
    start = time.perf_counter()
    model.embed(images, batch_size=batch)
    seconds = time.perf_counter() - start
    return {"images": len(images), "seconds": seconds, "images_per_s": len(images) / seconds,
            "threads": torch.get_num_threads()}


def bench_command(checkpoint: Path, folder: Path, out: Path, args: argparse.Namespace) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    config = ["--config", args.config] if args.config else []
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO_ROOT / "pipeline" / "embed.py"), *config,
                    "--input", str(folder), "--checkpoint", str(checkpoint), "--out", str(out),
                    *args.overrides], check=True)
    wall = time.perf_counter() - start
    run = json.loads((out / "_embed.json").read_text())["last_run"]
    return {**run, "wall_seconds": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", required=True, help="folder for the images, outputs and bench.json")
    parser.add_argument("--images", type=int, default=600, help="collection size")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--checkpoint", help="a training checkpoint (default: random weights)")
    args = parser.parse_args()
    args.overrides = ["embed.ray.num_actors=1", *args.overrides]
    cfg = load_config(args.config, args.overrides)
    out = Path(args.out).resolve()
    paths = write_collection(out / "images", args.images, args.size, cfg.seed)
    checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(cfg, out / "model.pt")
    command = bench_command(checkpoint, out / "images", out / "embeddings", args)
    bare = bench_bare(checkpoint, paths, cfg)
    figures = {"bare": bare, "command": command,
               "steady_over_bare": command["steady_images_per_s"] / bare["images_per_s"],
               "end_to_end_over_bare": command["images_per_s"] / bare["images_per_s"]}
    write_json(out / "bench.json", figures)
    print(f"\nbare forward pass ({bare['threads']} threads, images opened beforehand): "
          f"{bare['images_per_s']:.1f} images/s")
    print(f"embed command, steady state:  {command['steady_images_per_s']:.1f} images/s = "
          f"{figures['steady_over_bare']:.2f} x bare (target >= 0.9)")
    print(f"embed command, from Ray start: {command['images_per_s']:.1f} images/s = "
          f"{figures['end_to_end_over_bare']:.2f} x bare; whole command {command['wall_seconds']:.1f} s "
          f"for {command['images']} images -> {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
