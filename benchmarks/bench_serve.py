"""Query latency of the style-search page against bare faiss, measured in one run.

    python benchmarks/bench_serve.py --out demo/bench-serve [--sizes 10000,100000] [--dim 128]

For each collection size, seeded clustered unit codes are written as embedding files (as
pipeline/embed.py writes them) and indexed by `pipeline/search.py build`, flat and HNSW. Each
query is a collection image asked for by id:
- bare: the loaded faiss index's search for that image's code (the floor);
- app: GET /api/query?id=ID&k=K through the app's WSGI stack (Flask's test client: routing,
  the id lookup, faiss, the JSON answer with thumbnails' URLs and labels; no socket).
Bare and app run alternately on the same queries, one faiss thread each (a single query gains
nothing from more), after a warm-up. Prints p50/p99 of each and their ratio (target: app <= 1.5x
bare at p50) and writes them to <out>/bench.json.
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root wins imports

import argparse  # noqa: E402
import time  # noqa: E402
from urllib.parse import quote  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from common.files import write_json  # noqa: E402
from pipeline import search as search_command  # noqa: E402
from serve import load_app  # noqa: E402
from stylecode.store import ModelInfo, file_path, write_file  # noqa: E402

ROWS_PER_FILE = 50_000
WARM_UP = 30


def write_codes(folder: Path, count: int, dim: int, seed: int) -> None:
    """``count`` unit codes around ``count // 100`` centres, as embedding files; the image
    paths are names only (the benchmark asks for no file)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, count // 100), dim)).astype(np.float32)
    info = ModelInfo("bench", f"{seed:016x}", dim)
    for number, start in enumerate(range(0, count, ROWS_PER_FILE)):
        rows = min(ROWS_PER_FILE, count - start)
        codes = centres[rng.integers(0, len(centres), rows)] + 0.5 * rng.normal(size=(rows, dim)).astype(np.float32)
        codes /= np.linalg.norm(codes, axis=1, keepdims=True)
        ids = [f"g{(start + i) % 100:02d}/img{start + i:07d}.jpg" for i in range(rows)]
        write_file(file_path(folder, number), ids, [str(folder / "images" / i) for i in ids],
                   codes, [""] * rows, info)


def percentiles(seconds: list[float]) -> dict:
    values = np.array(seconds) * 1e3
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean())}


def measure(index: Path, queries: int, k: int, seed: int) -> dict:
    app = load_app([index], uploads=False)
    client = app.test_client()
    space = next(iter(app.extensions["serve"].spaces.values()))
    picked = np.random.default_rng(seed + 1).integers(0, len(space.index.ids), WARM_UP + queries)
    bare, served = [], []
    for n, position in enumerate(picked):
        code = np.ascontiguousarray(space.codes[position:position + 1])
        started = time.perf_counter()
        space.index.index.search(code, k)
        middle = time.perf_counter()
        response = client.get(f"/api/query?id={quote(space.index.ids[position])}&k={k}")
        ended = time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"the app answered {response.status_code}: {response.get_data(as_text=True)}")
        if n >= WARM_UP:
            bare.append(middle - started)
            served.append(ended - middle)
    figures = {"bare": percentiles(bare), "app": percentiles(served), "queries": queries, "k": k}
    figures["ratio_p50"] = figures["app"]["p50_ms"] / figures["bare"]["p50_ms"]
    figures["ratio_p99"] = figures["app"]["p99_ms"] / figures["bare"]["p99_ms"]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for the codes, indexes and bench.json")
    parser.add_argument("--sizes", default="10000,100000", help="collection sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=128, help="code dimension")
    parser.add_argument("--queries", type=int, default=500, help="measured queries per index")
    parser.add_argument("--k", type=int, default=10, help="results per query")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    results = {}
    print(f"{'codes':>8} {'index':>6} {'bare p50':>9} {'app p50':>9} {'ratio':>6} "
          f"{'bare p99':>9} {'app p99':>9} {'ratio':>6}   (ms; app = GET /api/query by id)")
    for size in [int(s) for s in args.sizes.split(",")]:
        folder = args.out.resolve() / f"codes-{size}"
        if not (folder / "_written").is_file():
            write_codes(folder, size, args.dim, args.seed)
            (folder / "_written").touch()
        for kind in ("flat", "hnsw"):
            index = folder / f"index-{kind}"
            if not (index / "index.json").is_file():
                started = time.time()
                search_command.main(["build", "--embeddings", str(folder), "--kind", kind,
                                     "--out", str(index), "search.threads=1"])
                print(f"  (built in {time.time() - started:.0f}s)", flush=True)
            figures = measure(index, args.queries, args.k, args.seed)
            results[f"{kind}-{size}"] = figures
            b, a = figures["bare"], figures["app"]
            print(f"{size:>8} {kind:>6} {b['p50_ms']:>9.3f} {a['p50_ms']:>9.3f} {figures['ratio_p50']:>6.2f} "
                  f"{b['p99_ms']:>9.3f} {a['p99_ms']:>9.3f} {figures['ratio_p99']:>6.2f}", flush=True)
    write_json(args.out / "bench.json", {"dim": args.dim, "faiss_threads": 1, "results": results})
    print(f"figures: {args.out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
