"""Stylizes one planned shard and writes it: the work one Ray actor call does.

A ``ShardWorker`` lives as long as its actor, so each NST model is built once per actor and
reused for every shard and style it sees. Failures of single images (unreadable files, a
method raising) are recorded in the shard's index with their reason; the shard still completes.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator, Literal

import torch
from PIL import Image, ImageStat

from common import storage
from common.images import open_image
from common.schema import Config
from pipeline.plan import PlannedSample, PlannedItem, ShardPlan
from shards.codec import encode_jpeg, pil_to_tensor
from shards.schema import CROP_METHOD, ItemMeta
from shards.writer import ShardWriter
from stylize import NSTMethod, configured_method, create_method


def square(image: Image.Image, size: int, mode: Literal["crop", "pad"] = "crop") -> Image.Image:
    """A ``size`` x ``size`` view of the image (every output of a split has one shape).

    ``crop``: the centre square, resized. ``pad``: the whole image, long side resized to
    ``size`` and centred on a square of its own mean colour (a foreign colour would leak into
    the colour statistics the NST methods transfer).
    """
    if mode == "crop":
        return centre_square(image).resize((size, size), Image.BICUBIC)
    scale = size / max(image.size)
    fitted = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                          Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), tuple(round(v) for v in ImageStat.Stat(image).mean))
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return canvas


def centre_square(image: Image.Image) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def crop_cell(image: Image.Image, row: int, col: int, grid: int, size: int) -> Image.Image:
    """Cell (row, col) of a grid x grid cut of the centre square: cells stay square, so a crop
    is never squashed (whatever ``stylize.square`` does to the whole image)."""
    base = centre_square(image)
    cell = base.width // grid
    return base.crop((col * cell, row * cell, (col + 1) * cell, (row + 1) * cell)).resize(
        (size, size), Image.BICUBIC)


def method_batches(items: tuple[PlannedItem, ...], batch_size: int) -> Iterator[list[PlannedItem]]:
    """Runs of items sharing one method and strength, at most ``batch_size`` long (a method
    call takes one strength for its whole batch)."""
    by_method: dict[tuple[str, float], list[PlannedItem]] = {}
    for item in items:
        by_method.setdefault((item.method, item.params["strength"]), []).append(item)
    for group in by_method.values():
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


def _record(item: PlannedItem) -> ItemMeta:
    return ItemMeta(index=item.index, content_id=item.content_id, category=item.category,
                    method=item.method, params=item.params, seed=item.seed)


class ShardWorker:
    """Holds NST models (built lazily, once) and turns shard plans into shard files."""

    def __init__(self, cfg: Config, device: str | None = None):
        self.cfg = cfg
        self.scfg = cfg.stylize
        storage.configure_from(cfg)   # an actor is a process of its own: the output may be a URL
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._methods: dict[str, NSTMethod] = {}

    def method(self, name: str) -> NSTMethod:
        if name not in self._methods:
            registered, options = configured_method(name, self.scfg.methods)
            self._methods[name] = create_method(registered, device=self.device,
                                                half=self.scfg.ray.half_precision, **options)
        return self._methods[name]

    def square(self, image: Image.Image, size: int) -> Image.Image:
        return square(image, size, self.scfg.square)

    def _stylize_batch(self, batch: list[PlannedItem], style: torch.Tensor, prepared: dict[str, object]
                       ) -> list[tuple[ItemMeta, bytes | None, str]]:
        """Stylize one batch; ``prepared`` caches each method's style state for this style
        (a style network runs once per style, not once per batch)."""
        size, quality = self.scfg.image_size, self.scfg.jpeg_quality
        loaded, results = [], []
        for item in batch:
            try:
                loaded.append((item, pil_to_tensor(self.square(open_image(item.content_path), size))))
            except Exception as exc:  # an unreadable content image fails alone
                results.append((_record(item), None, f"content {item.content_path}: {exc}"))
        if not loaded:
            return results
        method = self.method(batch[0].method)
        contents = torch.stack([tensor for _, tensor in loaded])
        try:
            with torch.no_grad():
                if batch[0].method not in prepared:
                    prepared[batch[0].method] = method.prepare_style(style)
                outputs = method.stylize(contents.to(method.device, torch.float32),
                                         prepared[batch[0].method], strength=batch[0].params["strength"],
                                         seed=batch[0].seed).float().cpu()
        except Exception as exc:  # a method failure loses this batch, not the shard
            return results + [(_record(item), None, f"{item.method} failed: {exc!r}")
                              for item, _ in loaded]
        params = {**batch[0].params, **method.options()}
        return results + [(replace(_record(item), params=params, seed=batch[0].seed),
                           encode_jpeg(out, quality), "") for (item, _), out in zip(loaded, outputs)]

    def _crops(self, group: PlannedSample, image: Image.Image) -> list[tuple[ItemMeta, bytes | None, str]]:
        size, quality = self.scfg.crops_size, self.scfg.jpeg_quality
        return [(_record(item), encode_jpeg(crop_cell(image, item.params["row"], item.params["col"],
                                                      item.params["grid"], size), quality), "")
                for item in group.items]

    def _group_outputs(self, group: PlannedSample, image: Image.Image
                       ) -> list[tuple[ItemMeta, bytes | None, str]]:
        if group.items and group.items[0].method == CROP_METHOD:
            return self._crops(group, image)
        style = pil_to_tensor(self.square(image, self.scfg.image_size))
        outputs, prepared = [], {}
        for batch in method_batches(group.items, self.scfg.ray.batch_size):
            outputs += self._stylize_batch(batch, style, prepared)
        return sorted(outputs, key=lambda out: out[0].index)

    def _write_group(self, writer: ShardWriter, group: PlannedSample) -> None:
        style = {"style_id": group.style_id, "group": group.group, "tags": group.tags}
        try:
            image = open_image(group.style_path)
        except Exception as exc:  # without its style image the whole group fails
            reason = f"style {group.style_path}: {exc}"
            writer.write_sample(**style, style_jpeg=None,
                                outputs=[(_record(i), None, reason) for i in group.items])
            return
        reference = self.square(image, self.scfg.style_image_size)
        writer.write_sample(**style, style_jpeg=encode_jpeg(reference, self.scfg.jpeg_quality),
                            outputs=self._group_outputs(group, image))

    def write_shard(self, shard: ShardPlan, out_dir: str | Path) -> dict:
        """Stylize every group of the shard and publish it; returns the shard's stats."""
        writer = ShardWriter(storage.join(out_dir, shard.split), shard.number, shard.split)
        try:
            for group in shard.groups:
                self._write_group(writer, group)
            stats = writer.close()
        except BaseException:  # a failed publish included: no temporary file stays behind
            writer.abort()
            raise
        stats["device"] = self.device
        return stats

