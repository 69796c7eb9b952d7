"""Style codes for any image: load a trained encoder, a baseline or a fused pair as one model.

    import stylecode
    model = stylecode.load("runs/nst/checkpoints/last.pt")     # or "baseline:vgg_moments"
    codes = model.embed(["a.jpg", "b.jpg"])                     # (2, D) unit rows
    similarity = float(codes[0] @ codes[1])                     # cosine: higher = closer style
"""
from common.images import ImageError
from stylecode.identity import (ModelSpec, Recipe, StyleCodeError, baseline_hash,
                                checkpoint_hash)
from stylecode.model import EncoderModel, FusedModel, StyleModel, build, load

__all__ = ["EncoderModel", "FusedModel", "ImageError", "ModelSpec", "Recipe", "StyleCodeError",
           "StyleModel", "baseline_hash", "build", "checkpoint_hash", "load"]
