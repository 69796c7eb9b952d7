"""Style mAP on random embeddings: the chunked metric of evaluation.metrics against a plain
per-query loop in the manner of scikit-learn's ``average_precision_score``.

    python benchmarks/bench_metrics.py [--sizes 20000 100000] [--threads 2]

Each measurement runs in its own process so its peak memory (ru_maxrss minus the memory held
before the computation starts: Python, torch and the embeddings) is its own. The loop is timed
on a subset of queries and extrapolated to all of them (its cost is the same for every query);
its APs are checked against the chunked metric on that subset.
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


def measure(kind: str, n: int, dim: int, group: int, chunk_size: int, loop_queries: int) -> dict:
    import torch
    from evaluation.metrics import rank_queries

    embeddings, labels = random_embeddings(n, dim, group)
    before = rss_bytes()
    started = time.perf_counter()
    if kind == "chunked":
        ranking = rank_queries(embeddings, labels, chunk_size=chunk_size, device="cpu")
        seconds, value = time.perf_counter() - started, ranking.mean_ap()
        check = ranking.ap[:loop_queries].tolist()
    else:
        aps = [loop_average_precision(embeddings, labels, q) for q in range(loop_queries)]
        seconds = (time.perf_counter() - started) * n / loop_queries
        value, check = 100 * float(np.mean(aps)), aps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"kind": kind, "n": n, "seconds": seconds, "peak_mb": max(peak - before, 0) / 2**20,
            "map": value, "ap_head": check, "threads": torch.get_num_threads()}


def run_child(args: argparse.Namespace, kind: str, n: int) -> dict:
    threads = str(args.threads if kind == "chunked" else args.loop_threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    command = [sys.executable, __file__, "--child", kind, "--threads", threads,
               "--sizes", str(n), "--dim", str(args.dim),
               "--group", str(args.group), "--chunk-size", str(args.chunk_size),
               "--loop-queries", str(args.loop_queries)]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--group", type=int, default=10, help="images per label")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--loop-queries", type=int, default=500, help="queries the loop really runs")
    parser.add_argument("--threads", type=int, default=2, help="threads of the chunked metric")
    # One BLAS thread is the loop's best case here: per-query mat-vecs are too small to share.
    parser.add_argument("--loop-threads", type=int, default=1)
    parser.add_argument("--child", choices=["chunked", "loop"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch
        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.child, args.sizes[0], args.dim, args.group, args.chunk_size,
                                 args.loop_queries)))
        return
    print(f"style mAP, {args.dim}-d random unit embeddings, labels in groups of {args.group}, CPU; "
          f"chunked: {args.threads} threads, loop: {args.loop_threads}, timed on its first "
          f"{args.loop_queries} queries and extrapolated (its mAP is over those queries)")
    print(f"{'N':>8} {'method':>8} {'threads':>8} {'seconds':>10} {'peak MB':>9} {'mAP %':>8} {'speed-up':>9}")
    for n in args.sizes:
        chunked, loop = run_child(args, "chunked", n), run_child(args, "loop", n)
        agreement = np.max(np.abs(np.array(chunked["ap_head"]) - np.array(loop["ap_head"])))
        for row in (chunked, loop):
            speedup = loop["seconds"] / row["seconds"]
            print(f"{n:>8} {row['kind']:>8} {row['threads']:>8} {row['seconds']:>10.1f} {row['peak_mb']:>9.0f} "
                  f"{row['map']:>8.3f} {speedup:>8.1f}x")
        print(f"{'':>8} max |AP difference| over the loop's {args.loop_queries} queries: {agreement:.2e}")


if __name__ == "__main__":
    main()
