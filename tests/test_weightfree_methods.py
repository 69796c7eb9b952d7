"""The weight-free NST methods (colour, whitening, gram, histogram) and their image operations.

Every image is drawn procedurally here at 64 px, saved as a PNG file and read back, so the
methods see real 8-bit images.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from shards.codec import pil_to_tensor, to_pil
from stylize import create_method
from stylize.parts.imageops import (lab_to_rgb, laplacian_pyramid, match_histograms,
                              reconstruct_pyramid, rgb_to_lab, sorted_values)

METHODS = ["colour", "whitening", "gram", "histogram"]
SIZE = 64


def _grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width),
                            indexing="ij")
    return ys, xs


def _paint(mask: torch.Tensor, image: torch.Tensor, colour: tuple[float, float, float]) -> None:
    image[:, mask] = torch.tensor(colour)[:, None]


def shapes_scene(size: int = SIZE) -> torch.Tensor:
    """Pale vertical gradient with a red disc and a blue square."""
    ys, xs = _grid(size, size)
    image = torch.stack([0.6 + 0.3 * ys, 0.75 + 0.15 * ys, 0.9 - 0.1 * ys])
    _paint((xs - 0.3) ** 2 + (ys - 0.35) ** 2 < 0.04, image, (0.85, 0.15, 0.15))
    _paint((xs > 0.55) & (xs < 0.9) & (ys > 0.5) & (ys < 0.85), image, (0.15, 0.25, 0.8))
    return image


def stripes_scene(size: int = SIZE) -> torch.Tensor:
    """Green horizontal bars over a light horizontal gradient, with a dark triangle."""
    ys, xs = _grid(size, size)
    image = torch.stack([0.9 - 0.3 * xs, 0.9 - 0.2 * xs, 0.7 + 0.2 * xs])
    _paint(torch.sin(ys * 5 * math.pi) > 0.6, image, (0.2, 0.6, 0.25))
    _paint((ys > 0.55) & (xs > 0.1) & ((xs - 0.1) < (ys - 0.55) * 1.6), image, (0.1, 0.1, 0.15))
    return image


def checker_style(height: int = 80, width: int = 96) -> torch.Tensor:
    """Fine orange/purple diagonal checks with grain: strong colour and texture, no layout."""
    ys, xs = _grid(height, width)
    checks = (torch.sin((xs + ys) * 40) * torch.sin((xs - ys) * 40) > 0).float()
    grain = torch.rand(1, height, width, generator=torch.Generator().manual_seed(3)) * 0.15
    orange, purple = torch.tensor([0.95, 0.55, 0.1]), torch.tensor([0.35, 0.1, 0.45])
    image = purple[:, None, None] + (orange - purple)[:, None, None] * checks + grain
    return image.clamp(0, 1)


def _via_png(image: torch.Tensor, path: Path) -> torch.Tensor:
    to_pil(image).save(path)
    with Image.open(path) as loaded:
        return pil_to_tensor(loaded)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, torch.Tensor]:
    folder = tmp_path_factory.mktemp("images")
    drawn = {"shapes": shapes_scene(), "stripes": stripes_scene(), "style": checker_style()}
    return {name: _via_png(image, folder / f"{name}.png") for name, image in drawn.items()}


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", params=METHODS)
def method(request):
    return create_method(request.param)


@pytest.fixture(scope="module")
def outputs(method, images) -> dict[str, torch.Tensor]:
    """Both contents stylized together in one batch, seed 0, full strength."""
    contents = torch.stack([images["shapes"], images["stripes"]])
    batch = method(contents, images["style"], strength=1.0, seed=0)
    return {"shapes": batch[0], "stripes": batch[1]}


def _lab_moments(image: torch.Tensor) -> torch.Tensor:
    lab = rgb_to_lab(image[None])[0].flatten(1)
    return torch.cat([lab.mean(1), lab.std(1)])


def _edge_map(image: torch.Tensor) -> torch.Tensor:
    grey = image.mean(0, keepdim=True)[None]
    sobel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    kernels = torch.stack([sobel_x, sobel_x.T])[:, None]
    gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    return gradients.square().sum(1).sqrt().flatten()


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


# --- every method ------------------------------------------------------------------------------

def test_output_shape_range_and_device(method, outputs, images):
    for output in outputs.values():
        assert output.shape == images["shapes"].shape
        assert output.dtype == torch.float32 and output.device == method.device
        assert output.min() >= 0.0 and output.max() <= 1.0
        assert not torch.allclose(output, images["shapes"], atol=0.02)


def test_same_seed_same_result(method, images):
    contents = images["shapes"][None]
    first = method(contents, images["style"], seed=7)
    assert torch.equal(first, method(contents, images["style"], seed=7))


def test_batch_equals_one_by_one(method, outputs, images):
    style_state = method.prepare_style(images["style"])
    for name, batched in outputs.items():
        alone = method.stylize(images[name][None], style_state, strength=1.0, seed=0)[0]
        difference = (alone - batched).abs()
        # Optimisation (gram) may amplify float rounding at a few pixels, never on average.
        assert difference.mean() < 1e-4 and difference.max() < 0.03, difference.max()


def test_style_statistics_move_towards_the_style(outputs, images):
    style = _lab_moments(images["style"])
    for name, output in outputs.items():
        before = (_lab_moments(images[name]) - style).norm()
        after = (_lab_moments(output) - style).norm()
        assert after < 0.6 * before, (name, before.item(), after.item())


def test_content_structure_is_kept(outputs, images):
    for name, other in (("shapes", "stripes"), ("stripes", "shapes")):
        edges = _edge_map(outputs[name])
        own = _correlation(edges, _edge_map(images[name]))
        control = _correlation(edges, _edge_map(images[other]))
        assert own > control + 0.2, (name, own, control)


def test_zero_strength_returns_the_content(method, images):
    contents = torch.stack([images["shapes"], images["stripes"]])
    output = method(contents, images["style"], strength=0.0, seed=0)
    assert torch.allclose(output, contents, atol=1e-3)


def test_half_strength_lies_between(method, images):
    contents = images["shapes"][None]
    full = method(contents, images["style"], strength=1.0)
    half = method(contents, images["style"], strength=0.5)
    assert 0.0 < (half - contents).abs().mean() < (full - contents).abs().mean()


def test_runs_under_inference_mode(method, outputs, images):
    # Stage 1 may wrap every method in inference_mode; optimisation-based ones must still work.
    with torch.inference_mode():
        output = method(images["shapes"][None], images["style"], seed=0)[0]
    assert torch.allclose(output, outputs["shapes"], atol=0.03)


def test_created_by_name_from_its_recorded_options(method, images):
    rebuilt = create_method(method.name, **method.options())
    contents = images["stripes"][None]
    assert torch.allclose(rebuilt(contents, images["style"]), method(contents, images["style"]))
    with pytest.raises(TypeError, match="unknown options"):
        create_method(method.name, no_such_option=1)


def test_methods_give_different_results(images):
    contents = images["shapes"][None]
    results = {name: create_method(name)(contents, images["style"])[0] for name in METHODS}
    for i, first in enumerate(METHODS):
        for second in METHODS[i + 1:]:
            difference = (results[first] - results[second]).abs().mean().item()
            assert difference > 0.02, (first, second, difference)


# --- image operations --------------------------------------------------------------------------

def test_lab_round_trip_and_reference_values():
    colours = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).T[None, :, :, None]
    lab = rgb_to_lab(colours)[0, :, :, 0].T
    # White is L=100 a=b=0; sRGB red is about (53.2, 80.1, 67.2).
    assert torch.allclose(lab[0], torch.tensor([100.0, 0.0, 0.0]), atol=0.05)
    assert torch.allclose(lab[1], torch.tensor([53.24, 80.09, 67.20]), atol=0.1)
    image = shapes_scene()[None]
    assert torch.allclose(lab_to_rgb(rgb_to_lab(image)), image, atol=1e-4)


@pytest.mark.parametrize("height,width", [(64, 64), (45, 71)])
def test_laplacian_pyramid_reconstructs_exactly(height, width):
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    pyramid = laplacian_pyramid(image, levels=4)
    assert len(pyramid) == 5 and pyramid[-1].shape[-1] < width // 8
    assert torch.allclose(reconstruct_pyramid(pyramid), image, atol=1e-5)


def test_histogram_matching_takes_the_reference_distribution_and_keeps_order():
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(2, 3, 500, generator=generator)
    reference = torch.randn(3, 800, generator=generator) * 5 + 2
    matched = match_histograms(source, sorted_values(reference))
    assert torch.allclose(matched.mean(-1), reference.mean(-1).expand(2, 3), atol=0.1)
    assert torch.allclose(matched.std(-1), reference.std(-1).expand(2, 3), rtol=0.05)
    assert torch.equal(matched.argsort(-1), source.argsort(-1))
