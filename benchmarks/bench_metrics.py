"""Exact style mAP on random embeddings: evaluation.metrics.rank_queries (APs and first-hit ranks)
against the bare chunked similarity product it is built on, and against a plain per-query loop
in the manner of scikit-learn's ``average_precision_score``.

    python benchmarks/bench_metrics.py [--sizes 20000 100000] [--threads 2] [--group 10]

Labels come in groups of ``--group`` consecutive images (10: nine relevant items per query).
Each size runs in its own process, which times rank_queries, then the bare product (``chunk @
gallery.T`` for the same chunks, in float64 as rank_queries computes it, into one reused buffer,
nothing else), then both again: the best of two of each gives their times and the ratio,
measured side by side so that other work on the machine weighs on both alike. Peak memory
added is ru_maxrss after the first rank_queries minus the memory held before it (Python, torch
with its BLAS set up, and the embeddings); one chunk's scores are shown beside it, the floor of
any chunked method.

The per-query loop runs (in its own process, one thread) only at sizes up to ``--loop-max``: it
is timed on a subset of queries and extrapolated to all of them (its cost is the same for every
query); its APs are checked against rank_queries' on that subset.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root wins imports

import numpy as np  # noqa: E402


def random_embeddings(n: int, dim: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((n, dim), dtype=np.float32)
    # einsum: no (n, dim) temporary that would set a floor under the measured peaks.
    embeddings /= np.sqrt(np.einsum("ij,ij->i", embeddings, embeddings))[:, None]
    return embeddings, np.arange(n) // group


def loop_average_precision(embeddings: np.ndarray, labels: np.ndarray, query: int) -> float:
    """One query as scikit-learn computes it: sort scores, cumulative true/false positives at
    each distinct threshold, AP = sum of recall steps x precision."""
    scores = np.delete(embeddings @ embeddings[query], query)
    relevant = np.delete(labels == labels[query], query)
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, relevant = scores[order], relevant[order]
    last_of_tie = np.r_[np.where(np.diff(scores))[0], len(scores) - 1]
    true_positives = np.cumsum(relevant)[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bare_product(embeddings: np.ndarray, chunk_size: int) -> None:
    """The similarity product alone, over rank_queries' chunks: the floor of its cost. Written
    into one reused buffer, as rank_queries does: a fresh result per chunk is above malloc's
    mmap threshold at 100k, so each would fault its pages in again (about a quarter more time)."""
    import torch
    gallery = torch.as_tensor(embeddings, dtype=torch.float64)   # rank_queries scores in float64
    buffer = torch.empty(min(chunk_size, len(gallery)), len(gallery), dtype=torch.float64)
    for start in range(0, len(gallery), chunk_size):
        chunk = gallery[start:start + chunk_size]
        torch.mm(chunk, gallery.T, out=buffer[: len(chunk)])


def timed(function: Callable, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def measure_chunked(n: int, dim: int, group: int, chunk_size: int, loop_queries: int) -> dict:
    import torch
    from evaluation.metrics import rank_queries

    embeddings, labels = random_embeddings(n, dim, group)
    torch.ones(256, 256) @ torch.ones(256, 256)   # BLAS and thread pools set up before the baseline
    before = rss_bytes()
    rank_seconds, product_seconds, peak = [], [], 0
    for _ in range(2):
        seconds, ranking = timed(rank_queries, embeddings, labels, chunk_size=chunk_size, device="cpu")
        rank_seconds.append(seconds)
        peak = peak or peak_bytes()   # after the first run, before any product: rank_queries' own
        product_seconds.append(timed(bare_product, embeddings, chunk_size)[0])
    return {"n": n, "rank_s": min(rank_seconds), "product_s": min(product_seconds),
            "peak_mb": max(peak - before, 0) / 2**20, "map": ranking.mean_ap(),
            "recall1": ranking.recall(1), "ap_head": ranking.ap[:loop_queries].tolist(),
            "threads": torch.get_num_threads()}


def measure_loop(n: int, dim: int, group: int, loop_queries: int) -> dict:
    embeddings, labels = random_embeddings(n, dim, group)
    started = time.perf_counter()
    aps = [loop_average_precision(embeddings, labels, q) for q in range(loop_queries)]
    seconds = (time.perf_counter() - started) * n / loop_queries
    return {"n": n, "seconds": seconds, "map": 100 * float(np.mean(aps)), "ap_head": aps}


def run_child(args: argparse.Namespace, kind: str, n: int) -> dict:
    threads = str(args.threads if kind == "chunked" else args.loop_threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
               MKL_NUM_THREADS=threads)
    command = [sys.executable, __file__, "--child", kind, "--threads", threads,
               "--sizes", str(n), "--dim", str(args.dim),
               "--group", str(args.group), "--chunk-size", str(args.chunk_size),
               "--loop-queries", str(args.loop_queries)]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    import torch
    torch.set_num_threads(args.threads)
    n = args.sizes[0]
    if args.child == "chunked":
        result = measure_chunked(n, args.dim, args.group, args.chunk_size, args.loop_queries)
    else:
        result = measure_loop(n, args.dim, args.group, args.loop_queries)
    print(json.dumps(result))


def report(args: argparse.Namespace, n: int) -> None:
    chunked = run_child(args, "chunked", n)
    block_mb = args.chunk_size * n * 8 / 2**20
    line = (f"{n:>8} {chunked['product_s']:>10.2f} {chunked['rank_s']:>10.2f} "
            f"{chunked['rank_s'] / chunked['product_s']:>6.2f}x {chunked['peak_mb']:>8.0f} "
            f"{block_mb:>8.0f} {chunked['map']:>7.3f} {chunked['recall1']:>6.2f}")
    if n <= args.loop_max:
        loop = run_child(args, "loop", n)
        agreement = np.max(np.abs(np.array(chunked["ap_head"]) - np.array(loop["ap_head"])))
        speedup = loop["seconds"] / chunked["rank_s"]
        line += f" {loop['seconds']:>9.1f} {speedup:>7.1f}x {agreement:>9.1e}"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--group", type=int, default=10, help="images per label")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="threads of the chunked metric")
    parser.add_argument("--loop-max", type=int, default=20000, help="largest size the loop runs at")
    parser.add_argument("--loop-queries", type=int, default=500, help="queries the loop really runs")
    # One BLAS thread is the loop's best case here: per-query mat-vecs are too small to share.
    parser.add_argument("--loop-threads", type=int, default=1)
    parser.add_argument("--child", choices=["chunked", "loop"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"style mAP, {args.dim}-d random unit embeddings, labels in groups of {args.group}, CPU, "
          f"{args.threads} threads, chunks of {args.chunk_size}; times: best of two, in seconds. "
          f"Loop: {args.loop_threads} thread, timed on {args.loop_queries} queries and extrapolated")
    print(f"{'N':>8} {'product':>10} {'mAP+rank':>10} {'ratio':>7} {'peak MB':>8} {'chunk MB':>8} "
          f"{'mAP %':>7} {'R@1 %':>6} {'loop':>9} {'speed-up':>8} {'max|dAP|':>9}")
    for n in args.sizes:
        report(args, n)


if __name__ == "__main__":
    main()
