"""What stage 1 does to a non-square image: the square the methods see, and the crop cells."""
import numpy as np
import pytest
from PIL import Image

from common.config import ConfigError, load_config
from pipeline.worker import ShardWorker, crop_cell, square

RED, BLUE, GREEN, WHITE = (220, 20, 20), (20, 20, 220), (20, 200, 20), (250, 250, 250)


def _wide() -> Image.Image:
    """60 x 30: red and green 15 px strips either side of a 30 px centre square, whose four
    quadrants are blue, white, white, blue."""
    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, :15], pixels[:, 45:] = RED, GREEN
    pixels[:15, 15:30], pixels[15:, 30:45] = BLUE, BLUE
    pixels[:15, 30:45], pixels[15:, 15:30] = WHITE, WHITE
    return Image.fromarray(pixels)


def _near(pixel, colour, tolerance=12) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, colour))


def test_crop_keeps_the_centre_square():
    out = np.asarray(square(_wide(), 16, "crop"))
    assert out.shape == (16, 16, 3)
    assert _near(out[2, 2], BLUE) and _near(out[2, 13], WHITE) and _near(out[13, 13], BLUE)
    assert not any(_near(p, RED) or _near(p, GREEN) for p in out.reshape(-1, 3))


def test_pad_keeps_the_whole_image_on_its_mean_colour():
    image = _wide()
    out = np.asarray(square(image, 16, "pad"))
    assert out.shape == (16, 16, 3)
    mean = np.asarray(image, np.float64).reshape(-1, 3).mean(0)
    assert all(_near(out[row, col], mean, 1) for row in (0, 3, 12, 15) for col in (0, 8, 15))
    assert _near(out[8, 1], RED) and _near(out[8, 14], GREEN)     # the strips are kept
    assert _near(out[5, 5], BLUE, 40) and _near(out[10, 10], BLUE, 40)   # not stretched


def test_an_unknown_mode_is_refused():
    with pytest.raises(ConfigError, match="stylize.square = 'stretch': Input should be 'crop' or 'pad'"):
        load_config(None, ["stylize.square=stretch"])


def test_the_worker_squares_as_configured():
    image = _wide()
    for mode in ("crop", "pad"):
        worker = ShardWorker(load_config(None, [f"stylize.square={mode}"]), device="cpu")
        assert worker.square(image, 16).tobytes() == square(image, 16, mode).tobytes()


@pytest.mark.parametrize("row,col,colour", [(0, 0, BLUE), (0, 1, WHITE), (1, 0, WHITE), (1, 1, BLUE)])
def test_crop_cells_are_square_cells_of_the_centre_square(row, col, colour):
    cell = np.asarray(crop_cell(_wide(), row, col, 2, 8))
    assert cell.shape == (8, 8, 3)
    assert all(_near(p, colour) for p in cell.reshape(-1, 3))   # one quadrant, no strip, no squash
