"""Object storage and scaling benchmark: prints figures measured in one run on this machine.

    python benchmarks/bench_storage.py --config configs/smoke.yaml --out /tmp/bench-storage [key=value ...]

1. Stage 1 writing to a local S3 server (moto's, a process on 127.0.0.1; s3fs as the client) against
   writing to local disk: end to end and inside the actors (the tar, index and stats uploads
   included).
2. The training loop's rate with batches from the shard loader reading S3, reading local disk,
   and from pre-built tensors: the loader's share of a step on each.
3. Stage 1 with 2 Ray actors against 1, next to what two bare processes running the same NST
   batches reach against one (started together, timed over the same interval): the machine's
   own ceiling for two workers.
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root wins imports

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from benchmarks.bench_pipeline import (bench_stage1, prepare_bare_methods,  # noqa: E402
                                       run_bare_methods, train_rate)
from common import storage  # noqa: E402
from common.config import DEFAULT_CONFIG, add_config_args, load_config  # noqa: E402
from common.schema import Config  # noqa: E402
from train.data import batch_iterator  # noqa: E402

BUCKET = "nststyle-bench"


def start_s3() -> tuple[subprocess.Popen, str]:
    """A moto S3 server on loopback, a process of its own as a store is, with one bucket; the
    S3 client (here, in Ray's workers and in data workers) is configured by environment
    variables, as a user's would be."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    fs, _ = storage.filesystem(f"s3://{BUCKET}")
    for _ in range(100):   # until it listens
        try:
            fs.mkdir(BUCKET)
            return server, f"s3://{BUCKET}"
        except Exception:   # not up yet: botocore's connection error
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the local S3 server did not start")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_loader(cfg: Config, local: Path, remote: str, steps: int) -> dict:
    """Training images/s from the shard loader on each store and from pre-built tensors."""
    torch.set_num_threads(2)
    train = cfg.train
    prebuilt = [batch for batch, _ in zip(batch_iterator(local, train, cfg.seed, 0, 1), range(steps + 1))]
    return {"tensors": train_rate(cfg, iter(prebuilt), steps),
            "local": train_rate(cfg, batch_iterator(local, train, cfg.seed, 0, 1), steps),
            "s3": train_rate(cfg, batch_iterator(remote, train, cfg.seed, 0, 1), steps)}


def bare_worker(cfg: Config, start_at: float, seconds: float) -> dict:
    """One bare process: prepare, wait for the common start, stylize passes for ``seconds``."""
    worker, jobs = prepare_bare_methods(cfg)
    time.sleep(max(0.0, start_at - time.time()))
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += run_bare_methods(worker, jobs)
    return {"images": images, "images_per_s": images / (time.perf_counter() - start)}


def bench_bare_processes(config: str, overrides: list[str], count: int, seconds: float) -> float:
    """Images/s of ``count`` bare processes together (each its own Python, one thread)."""
    start_at = time.time() + 20   # after every process has loaded its images and models
    procs = [subprocess.Popen([sys.executable, __file__, "--config", config, "--bare-worker",
                               f"{start_at}:{seconds}", *overrides], stdout=subprocess.PIPE, text=True)
             for _ in range(count)]
    rates = [json.loads(proc.communicate()[0].strip().splitlines()[-1])["images_per_s"] for proc in procs]
    return sum(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-storage"))
    parser.add_argument("--train-steps", type=int, default=10, help="timed steps per training loop")
    parser.add_argument("--bare-seconds", type=float, default=10.0,
                        help="timed interval of the bare processes")
    parser.add_argument("--bare-worker", help=argparse.SUPPRESS)   # START:SECONDS, internal
    args = parser.parse_args(argv)
    args.config = args.config or str(DEFAULT_CONFIG)
    cfg = load_config(args.config, args.overrides)
    if args.bare_worker:
        start_at, seconds = map(float, args.bare_worker.split(":"))
        print(json.dumps(bare_worker(cfg, start_at, seconds)))
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    server, bucket = start_s3()
    try:
        results = {"local": bench_stage1(cfg, out / "stage1-local", 1),
                   "s3": bench_stage1(cfg, storage.join(bucket, "stage1"), 1),
                   "local_2": bench_stage1(cfg, out / "stage1-local-2", 2)}
        results["loader"] = bench_loader(cfg, out / "stage1-local", storage.join(bucket, "stage1"),
                                         args.train_steps)
    finally:
        server.kill()
    results["bare_1"] = bench_bare_processes(args.config, args.overrides, 1, args.bare_seconds)
    results["bare_2"] = bench_bare_processes(args.config, args.overrides, 2, args.bare_seconds)
    report(results)
    (out / "bench-storage.json").write_text(json.dumps(results, indent=2))
    print(f"figures: {out / 'bench-storage.json'}")
    return 0


def report(results: dict) -> None:
    local, s3, two, loader = results["local"], results["s3"], results["local_2"], results["loader"]
    print("\n| stage 1, 1 actor | images | seconds | images/s end to end | images/s inside the actor |")
    print("|---|---|---|---|---|")
    for label, r in (("local disk", local), ("S3 (moto, loopback)", s3)):
        print(f"| {label} | {r['images']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | "
              f"{r['per_actor_images_per_s']:.1f} |")
    print(f"\nstage 1 to S3 / to local disk: end to end {s3['images_per_s'] / local['images_per_s']:.2f} x, "
          f"inside the actor {s3['per_actor_images_per_s'] / local['per_actor_images_per_s']:.2f} x")
    print("\n| training (1 process, 2 threads) | images/s | loader share of a step |\n|---|---|---|")
    for key, label in (("tensors", "pre-built tensors"), ("local", "shard loader, local disk"),
                       ("s3", "shard loader, S3")):
        print(f"| {label} | {loader[key]:.1f} | {100 * (1 - loader[key] / loader['tensors']):.1f}% |")
    print(f"\nstage 1, 2 actors / 1 actor (local disk, end to end): "
          f"{two['images_per_s'] / local['images_per_s']:.2f} x")
    print(f"bare NST processes, 2 / 1 (this machine's ceiling for two workers): "
          f"{results['bare_2']:.1f} / {results['bare_1']:.1f} images/s = "
          f"{results['bare_2'] / results['bare_1']:.2f} x")


if __name__ == "__main__":
    sys.exit(main())
