"""Contact sheets of search results: one row per query, the query first, then its results
with their scores."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from common.files import atomic_output
from common.images import ImageError, open_image

PAD, CAPTION = 6, 30
QUERY_BACKGROUND, MISSING_BACKGROUND = (235, 235, 245), (200, 200, 200)


@dataclass
class SheetRow:
    """A query (an image, or the words searched for) and its results (path, score, id)."""

    query: Image.Image | str
    label: str
    results: list[tuple[str, float, str]]


def _text_tile(text: str, tile: int, background: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (tile, tile), background)
    wrapped = "\n".join(textwrap.wrap(text, width=max(8, tile // 7))[: tile // 12])
    ImageDraw.Draw(image).multiline_text((PAD, PAD), wrapped, fill=(20, 20, 20))
    return image


def _thumbnail(image: Image.Image, tile: int) -> Image.Image:
    canvas = Image.new("RGB", (tile, tile), (255, 255, 255))
    small = ImageOps.contain(image, (tile, tile))
    canvas.paste(small, ((tile - small.width) // 2, (tile - small.height) // 2))
    return canvas


def _result_tile(path: str, tile: int) -> Image.Image:
    try:
        return _thumbnail(open_image(path), tile)
    except ImageError:  # moved or deleted since it was embedded: the sheet still shows the rank
        return _text_tile(f"unreadable: {Path(path).name}", tile, MISSING_BACKGROUND)


def _caption(draw: ImageDraw.ImageDraw, xy: tuple[int, int], lines: list[str], tile: int) -> None:
    width = max(8, tile // 6)
    draw.multiline_text(xy, "\n".join(line[:width] for line in lines), fill=(0, 0, 0))


def contact_sheet(rows: list[SheetRow], path: str | Path, tile: int = 128) -> Path:
    """Draw the rows into a PNG at ``path`` (written atomically); returns the path."""
    columns = 1 + max((len(row.results) for row in rows), default=0)
    sheet = Image.new("RGB", (PAD + columns * (tile + PAD), PAD + len(rows) * (tile + CAPTION + PAD)),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = PAD + r * (tile + CAPTION + PAD)
        query = (_text_tile(row.query, tile, QUERY_BACKGROUND) if isinstance(row.query, str)
                 else _thumbnail(row.query, tile))
        sheet.paste(query, (PAD, top))
        _caption(draw, (PAD, top + tile + 2), ["query", row.label], tile)
        for c, (result_path, score, item_id) in enumerate(row.results, start=1):
            left = PAD + c * (tile + PAD)
            sheet.paste(_result_tile(result_path, tile), (left, top))
            _caption(draw, (left, top + tile + 2), [f"{c}. {score:.3f}", item_id], tile)
    path = Path(path)
    with atomic_output(path) as handle:
        sheet.save(handle, format="PNG")
    return path
