"""The style encoder: a timm ViT and the normalised VGG19's AdaIN moments (the published two
branches), optionally with a third, frozen pretrained style network (Magenta's style-prediction
network, the role ALADIN's pretrained code plays), fused by an MLP into one L2-normalised style
code.

Inputs are RGB in [0, 1]; each branch applies its own normalisation (the ViT its timm
mean/std, the VGG branch none: the first 1x1 conv of ``vgg_normalised.pth`` does it).
:meth:`StyleEncoder.spec` is what a checkpoint needs to rebuild the encoder without the run's
config: the model section, the image size, and the style network's options and files (by name
and sha256; ``models.checkpoint`` finds them again).
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from common.schema import METHOD_FILE_OPTIONS, Config, Model, StyleNet, Vgg, Vit, with_defaults
from models.embedder import resize_batch
from stylize.magenta import STYLE_DIM, MagentaArbitrary, network_options
from stylize.parts.checkpoint import CheckpointError, load_into
from stylize.parts.vgg import RELU_CHANNELS, RELU_NAMES, VGGFeatures, modules_up_to, vgg_normalised


class ModelConfigError(ValueError):
    """A model section of the config that cannot be built."""


def _existing_file(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise ModelConfigError(f"{what} file not found: {file}")
    return file


class ViTBranch(nn.Module):
    """A timm ViT returning its pooled features; pretrained from a local file when given."""

    def __init__(self, cfg: Vit, image_size: int, load_weights: bool = True):
        super().__init__()
        file = _existing_file(cfg.pretrained_file, "train.model.vit.pretrained_file") \
            if load_weights else None
        # Only set keys override the named architecture (a null depth keeps its own).
        overrides = {"depth": cfg.depth} if cfg.depth else {}
        # timm resamples the position (and patch) embeddings of the file to this grid.
        self.net = timm.create_model(
            cfg.name, pretrained=file is not None,
            pretrained_cfg_overlay=dict(file=str(file)) if file else None,
            num_classes=0, img_size=image_size, patch_size=cfg.patch_size, **overrides)
        mean, std = self.net.pretrained_cfg["mean"], self.net.pretrained_cfg["std"]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.out_dim = self.net.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


def vgg_layers_up_to(max_layer: str) -> list[str]:
    """Every ReLU of the normalised VGG19 from relu1_1 to ``max_layer`` inclusive."""
    try:
        modules_up_to(max_layer)
    except KeyError as exc:
        raise ModelConfigError(f"train.model.vgg.max_layer: {exc.args[0]}") from None
    return RELU_NAMES[: RELU_NAMES.index(max_layer) + 1]


def normalised_vgg(last_layer: str, weights: Path | None) -> nn.Sequential:
    """The normalised VGG19 up to ``last_layer``, from a ``vgg_normalised.pth`` file if given."""
    vgg = vgg_normalised(modules_up_to(last_layer))
    if weights is not None:
        # Not strict: the published file holds all 53 modules, a truncated network fewer.
        try:
            load_into(vgg, weights, strict=False, what="train.model.vgg.weights")
        except CheckpointError as exc:
            raise ModelConfigError(str(exc)) from None
    return vgg


class VGGMomentsBranch(nn.Module):
    """Per-channel mean and std of every ReLU up to ``max_layer`` (ALADIN's AdaIN moments).

    Each layer's moments get their own LayerNorm: activation scales differ by orders of
    magnitude between layers (more so with random weights), and one layer must not drown
    the others in the fusion MLP.
    """

    def __init__(self, cfg: Vgg, load_weights: bool = True):
        super().__init__()
        self.layers = vgg_layers_up_to(cfg.max_layer)
        file = _existing_file(cfg.weights, "train.model.vgg.weights") if load_weights else None
        self.features = VGGFeatures(self.layers, normalised_vgg(self.layers[-1], file))
        self.trainable = cfg.trainable
        self.features.requires_grad_(self.trainable)
        self.norms = moment_norms(self.layers)
        self.out_dim = sum(2 * RELU_CHANNELS[name] for name in self.layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            activations = self.features(images)
        return layer_moments(activations, self.norms)


def layer_moments(activations: dict[str, torch.Tensor], norms: nn.ModuleDict) -> torch.Tensor:
    """Per-channel mean and std of each layer named in ``norms``, LayerNormed per layer."""
    moments = []
    for name, norm in norms.items():
        act = activations[name].float().flatten(2)
        moments.append(norm(torch.cat([act.mean(dim=2), act.std(dim=2)], dim=1)))
    return torch.cat(moments, dim=1)


def moment_norms(layers: list[str]) -> nn.ModuleDict:
    """One LayerNorm per layer over its 2C moments (see :class:`VGGMomentsBranch`)."""
    return nn.ModuleDict({name: nn.LayerNorm(2 * RELU_CHANNELS[name]) for name in layers})


class StyleNetBranch(nn.Module):
    """Magenta's pretrained style-prediction network, frozen: its 100-d style vector, LayerNormed.

    The network runs in onnxruntime (frozen, so no gradient is needed) at ``style_size`` px, on
    the device of the images it gets (CUDA provider with onnxruntime-gpu). ``options`` are the
    network's constructor options (``stylize.magenta.network_options``: model files, threads);
    files not named there are the installed package's. Only the LayerNorm is trained.
    """

    method = "magenta"   # the registered NST method whose conditioning code the branch computes
    # Options naming model files (the schema's MethodFiles): the spec names them by hash instead.
    FILE_OPTIONS = METHOD_FILE_OPTIONS

    def __init__(self, cfg: StyleNet, options: dict):
        super().__init__()
        self.style_size, self.options = cfg.style_size, options
        self.network = self._network("cpu")   # files checked now
        self.norm = nn.LayerNorm(STYLE_DIM)
        self.out_dim = STYLE_DIM

    def _network(self, device: str | torch.device) -> MagentaArbitrary:
        return MagentaArbitrary(**{**self.options, "style_size": self.style_size, "device": device})

    def spec(self) -> dict:
        """The options that shape the vectors, and each model file by name and sha256 (its
        path on this machine says nothing on another)."""
        options = {k: v for k, v in self.options.items() if k not in self.FILE_OPTIONS}
        files = {option: {"name": name, "sha256": digest}
                 for option, (name, digest) in self.network.files.items()}
        return {"options": options, "files": files}

    def vectors(self, images: torch.Tensor) -> torch.Tensor:
        """The network's raw style vectors (B, 100), on the images' device."""
        if images.device != self.network.device:   # the module moved: so does the session
            self.network = self._network(images.device)
        # clone(): the network answers in inference mode; autograd needs an ordinary tensor
        return self.network.style_vectors(images.detach()).clone().to(images.device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self.vectors(images))


class PretrainedStart(nn.Module):
    """The style vector's direction, mapped into the code by an identity-initialised projection.

    Added to the fusion MLP's output, whose last layer starts at zero: before any training the
    code is the L2-normalised style vector in the first 100 of ``embed_dim`` coordinates, so it
    ranks every image exactly as the pretrained network does, and training moves it only where
    the loss pulls (the projection and the MLP both learn).
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.project = nn.Linear(STYLE_DIM, embed_dim, bias=False)
        with torch.no_grad():
            self.project.weight.zero_()
            self.project.weight[:STYLE_DIM].copy_(torch.eye(STYLE_DIM))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.project(F.normalize(vectors.float(), dim=1))


class StyleEncoder(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> (B, embed_dim) L2-normalised style codes.

    Images of another size are resized to ``image_size`` first (``models.embedder``'s policy),
    so any resolution can be fed. ``load_weights=False`` skips the ViT and VGG files (a
    checkpoint supplies their weights). ``style_net_options`` are the style network's
    constructor options (:class:`StyleNetBranch`), read even from a checkpoint: it holds no
    copy of the network.
    """

    def __init__(self, model_cfg: Model | dict, image_size: int, load_weights: bool = True,
                 style_net_options: dict | None = None):
        super().__init__()
        model = model_section(model_cfg)   # the schema checked it: at least one branch is on
        self.model_cfg = model.model_dump()   # what a checkpoint's spec records
        self.image_size = image_size
        self.vit = ViTBranch(model.vit, image_size, load_weights) if model.vit.enabled else None
        self.vgg = VGGMomentsBranch(model.vgg, load_weights) if model.vgg.enabled else None
        self.style_net = StyleNetBranch(model.style_net, style_net_options or {}) \
            if model.style_net.enabled else None
        in_dim = sum(branch.out_dim for branch in self.branches())
        self.fusion = nn.Sequential(nn.Linear(in_dim, model.fusion_hidden), nn.GELU(),
                                    nn.Linear(model.fusion_hidden, model.embed_dim))
        residual = model.style_net.enabled and model.style_net.residual
        self.start = PretrainedStart(model.embed_dim) if residual else None
        if self.start is not None:   # the MLP starts as a zero correction of the style vector
            nn.init.zeros_(self.fusion[-1].weight)
            nn.init.zeros_(self.fusion[-1].bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = resize_batch(images, self.image_size)
        parts = [branch(images).float() for branch in (self.vit, self.vgg) if branch is not None]
        vectors = self.style_net.vectors(images) if self.style_net is not None else None
        if vectors is not None:
            parts.append(self.style_net.norm(vectors))
        code = self.fusion(torch.cat(parts, dim=1)).float()
        if self.start is not None:
            code = code + self.start(vectors)
        return F.normalize(code, dim=1)

    def branches(self) -> list[nn.Module]:
        return [branch for branch in (self.vit, self.vgg, self.style_net) if branch is not None]

    def spec(self) -> dict:
        """What rebuilding this encoder needs besides its weights (see the module notes)."""
        return {"model": self.model_cfg, "image_size": self.image_size,
                "style_net": self.style_net.spec() if self.style_net is not None else None}


def model_section(model_cfg: Model | dict) -> Model:
    """``train.model`` as the schema types it: a loaded config's section, or the plain dict a
    checkpoint recorded (keys added since it was written take their defaults: a checkpoint
    without ``style_net.residual`` was trained without it)."""
    if isinstance(model_cfg, Model):
        return model_cfg
    return Model.model_validate(with_defaults(model_cfg, Model))


def build_encoder(cfg: Config, load_weights: bool = True) -> StyleEncoder:
    """The encoder a loaded config describes."""
    return StyleEncoder(cfg.train.model, cfg.train.image_size, load_weights,
                        network_options(cfg.stylize.methods))


def saved_encoder(saved: dict, load_weights: bool = True) -> StyleEncoder:
    """The encoder of the plain config dict a checkpoint written before encoder specs recorded
    (``train.model`` validated like any saved section: keys added since take their defaults)."""
    return StyleEncoder(saved["train"]["model"], saved["train"]["image_size"], load_weights,
                        network_options(saved["stylize"]["methods"]))
