"""Throughput of the weight-free NST methods, and a comparison sheet of their outputs.

    python benchmarks/bench_methods.py [--sizes 64 128] [--batch 8] [--threads 1]
                                       [--sheet docs/methods_sheet.png]

Prints one row per method and size: batched images per second and the cost of
``prepare_style``. The sheet shows content, style and the four outputs for three
procedurally drawn content/style pairs.
"""
from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from shards.codec import pil_to_tensor, to_pil
from stylize import create_method

METHODS = ("colour", "whitening", "gram", "histogram")


# --- procedural pictures -----------------------------------------------------------------------

def _sky(size: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        t = y / (size - 1)
        colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom))
        draw.line([(0, y), (size, y)], fill=colour)
    return image


def draw_shapes(size: int) -> Image.Image:
    image = _sky(size, (150, 200, 240), (240, 240, 220))
    draw = ImageDraw.Draw(image)
    s = size / 64
    draw.ellipse([6 * s, 8 * s, 30 * s, 32 * s], fill=(220, 40, 40))
    draw.rectangle([34 * s, 20 * s, 58 * s, 44 * s], fill=(40, 70, 200))
    draw.polygon([(10 * s, 58 * s), (26 * s, 36 * s), (42 * s, 58 * s)], fill=(40, 160, 60))
    return image


def draw_house(size: int) -> Image.Image:
    image = _sky(size, (120, 170, 230), (200, 220, 240))
    draw = ImageDraw.Draw(image)
    s = size / 64
    draw.rectangle([0, 46 * s, size, size], fill=(80, 150, 60))
    draw.rectangle([16 * s, 28 * s, 48 * s, 54 * s], fill=(230, 210, 170))
    draw.polygon([(12 * s, 28 * s), (32 * s, 12 * s), (52 * s, 28 * s)], fill=(150, 50, 40))
    draw.rectangle([28 * s, 40 * s, 36 * s, 54 * s], fill=(90, 60, 30))
    draw.rectangle([19 * s, 32 * s, 25 * s, 38 * s], fill=(170, 210, 240), outline=(40, 40, 40))
    return image


def draw_face(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), (235, 225, 200))
    draw = ImageDraw.Draw(image)
    s = size / 64
    draw.ellipse([12 * s, 8 * s, 52 * s, 56 * s], fill=(240, 190, 150), outline=(60, 40, 30),
                 width=max(1, round(s)))
    for x in (22, 36):
        draw.ellipse([x * s, 22 * s, (x + 6) * s, 28 * s], fill=(30, 30, 60))
    draw.arc([22 * s, 30 * s, 42 * s, 46 * s], 20, 160, fill=(150, 30, 40),
             width=max(2, round(2 * s)))
    return image


def draw_stripes(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size))
    pixels = image.load()
    for y in range(size):
        for x in range(size):
            phase = math.sin((x + y) * 0.45 + 2.0 * math.sin(y * 0.08))
            pixels[x, y] = (250, 140, 30) if phase > 0.2 else (90, 30, 120)
    return image


def draw_dots(size: int, seed: int = 1) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (20, 30, 80))
    draw = ImageDraw.Draw(image)
    for _ in range(size * size // 60):
        x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1.5, 4.5)
        colour = rng.choice([(250, 220, 60), (240, 240, 230)])
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return image


def draw_brush(size: int, seed: int = 2) -> Image.Image:
    rng = random.Random(seed)
    palette = [(60, 110, 40), (130, 160, 60), (110, 70, 30), (200, 180, 90), (30, 60, 30)]
    image = Image.new("RGB", (size, size), (120, 120, 60))
    draw = ImageDraw.Draw(image)
    for _ in range(size * size // 12):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        angle = rng.gauss(0.8, 0.3)
        length = rng.uniform(4, 10)
        draw.line([(x, y), (x + length * math.cos(angle), y + length * math.sin(angle))],
                  fill=rng.choice(palette), width=rng.choice([2, 3]))
    return image


PAIRS = ((draw_shapes, draw_stripes), (draw_house, draw_brush), (draw_face, draw_dots))


# --- benchmark ---------------------------------------------------------------------------------

def _seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first calls pay for allocations and kernel selection
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def benchmark(sizes: list[int], batch: int, repeats: int) -> list[dict]:
    rows = []
    for name in METHODS:
        method = create_method(name)
        for size in sizes:
            contents = torch.stack([pil_to_tensor(draw(size)) for draw, _ in PAIRS] * batch)[:batch]
            style = pil_to_tensor(draw_brush(size * 2))
            state = method.prepare_style(style)
            prepare = _seconds(lambda: method.prepare_style(style), repeats)
            stylize = _seconds(lambda: method.stylize(contents, state, 1.0, 0), repeats)
            rows.append({"method": name, "size": size, "batch": batch,
                         "img_per_s": batch / stylize, "prepare_ms": prepare * 1e3})
    return rows


def comparison_sheet(size: int, path: Path) -> None:
    """Rows: the content/style pairs; columns: content, style, then one output per method."""
    label_height = 14
    columns = ("content", "style") + METHODS
    sheet = Image.new("RGB", (size * len(columns), label_height + size * len(PAIRS)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(columns):
        draw.text((column * size + 3, 1), title, fill="black")
    methods = [create_method(name) for name in METHODS]
    for row, (draw_content, draw_style) in enumerate(PAIRS):
        content = pil_to_tensor(draw_content(size))[None]
        style = pil_to_tensor(draw_style(size * 3 // 2))
        outputs = [to_pil(content[0]), to_pil(style).resize((size, size))]
        outputs += [to_pil(method(content, style, seed=0)[0]) for method in methods]
        for column, image in enumerate(outputs):
            sheet.paste(image, (column * size, label_height + row * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sheet", type=Path, default=None, help="also write a comparison sheet")
    parser.add_argument("--sheet-size", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.sheet:
        comparison_sheet(args.sheet_size, args.sheet)
        print(f"comparison sheet: {args.sheet.resolve()}")
    print(f"{'method':<10} {'size':>5} {'batch':>5} {'img/s':>8} {'prepare ms':>11}"
          f"   ({args.threads} thread(s))")
    for row in benchmark(args.sizes, args.batch, args.repeats):
        print(f"{row['method']:<10} {row['size']:>5} {row['batch']:>5} {row['img_per_s']:>8.1f} "
              f"{row['prepare_ms']:>11.1f}")


if __name__ == "__main__":
    main()
