"""Throughput of the ``magenta`` method (pretrained, onnxruntime): one image per call vs a batch.

    python benchmarks/bench_magenta.py [--size 64] [--work-size 256] [--batches 1 8]
                                       [--images 16] [--threads 1] [--strength 1.0]

Every batch size stylizes the same ``--images`` contents (``size`` px, each resized to
``work_size`` inside the method), so the rows compare the same work done in fewer, larger
network calls. Prints images/s, wall and CPU ms per image and the cost of ``prepare_style``,
each the best of ``--repeats`` interleaved runs.
"""
from __future__ import annotations

import argparse
import time

import torch

from bench_methods import PAIRS, draw_brush
from shards.codec import pil_to_tensor
from stylize import create_method


def _best_seconds(fns: dict, repeats: int) -> dict:
    """Fastest wall and CPU seconds of ``repeats`` runs of each function, taken in turns.

    Interleaving and keeping the minimum make the comparison fair on a machine whose other
    load changes during the run; the CPU time (this process, all its threads) is what the
    run would take alone when it is the only thing slowed down by other processes.
    """
    for fn in fns.values():
        fn()  # warm-up: the first run of a shape pays for memory planning
    best = {key: (float("inf"), float("inf")) for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[key] = (min(best[key][0], wall), min(best[key][1], cpu))
    return best


def benchmark(size: int, work_size: int, batches: list[int], images: int, threads: int,
              strength: float, repeats: int) -> tuple[float, list[dict]]:
    method = create_method("magenta", work_size=work_size, threads=threads)
    style = pil_to_tensor(draw_brush(256))
    state = method.prepare_style(style)
    prepare = _best_seconds({"prepare": lambda: method.prepare_style(style)}, repeats)["prepare"][0]
    contents = torch.stack([pil_to_tensor(draw(size)) for draw, _ in PAIRS] * images)[:images]

    def run(batch: int) -> None:
        for chunk in contents.split(batch):
            method.stylize(chunk, state, strength, 0)

    seconds = _best_seconds({batch: lambda b=batch: run(b) for batch in batches}, repeats)
    return prepare, [{"batch": batch, "img_per_s": images / seconds[batch][0],
                      "ms_per_img": seconds[batch][0] / images * 1e3,
                      "cpu_ms_per_img": seconds[batch][1] / images * 1e3} for batch in batches]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--work-size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prepare, rows = benchmark(args.size, args.work_size, args.batches, args.images,
                              args.threads, args.strength, args.repeats)
    print(f"magenta: {args.images} contents of {args.size} px, work size {args.work_size}, "
          f"strength {args.strength}, {args.threads} thread(s); "
          f"prepare_style {prepare * 1e3:.1f} ms")
    print(f"{'batch':>5} {'img/s':>8} {'ms/img':>8} {'CPU ms/img':>11}")
    for row in rows:
        print(f"{row['batch']:>5} {row['img_per_s']:>8.1f} {row['ms_per_img']:>8.1f} "
              f"{row['cpu_ms_per_img']:>11.1f}")
    if len(rows) > 1:
        print(f"batch {rows[-1]['batch']} / batch {rows[0]['batch']}: "
              f"{rows[-1]['img_per_s'] / rows[0]['img_per_s']:.2f} x")


if __name__ == "__main__":
    main()
