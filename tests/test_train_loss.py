"""The contrastive losses: label agreement, permutation invariance, gradients, and the style
image counted as a positive of its stylizations (on a batch drawn from real shards)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import webdataset as wds

from shard_factory import make_split
from shards.reader import complete_shards
from train.data import assemble, draw_from_sample, label_id
from train.loss import multi_positive_infonce, supcon_loss, two_view_loss


def clustered_codes(labels: torch.Tensor, dim: int = 16, noise: float = 0.05) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(int(labels.max()) + 1, dim, generator=generator)
    return F.normalize(centres[labels] + noise * torch.randn(len(labels), dim, generator=generator), dim=1)


LABELS = torch.arange(6).repeat_interleave(4)


def test_loss_lower_when_codes_agree_with_labels():
    codes = clustered_codes(LABELS)
    shuffled = LABELS[torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(1))]
    agree = multi_positive_infonce(codes, LABELS, 0.1)
    disagree = multi_positive_infonce(codes, shuffled, 0.1)
    assert agree < disagree - 1.0


def test_loss_invariant_to_batch_order():
    codes = F.normalize(torch.randn(len(LABELS), 8), dim=1)
    order = torch.randperm(len(LABELS))
    assert torch.allclose(multi_positive_infonce(codes, LABELS, 0.2),
                          multi_positive_infonce(codes[order], LABELS[order], 0.2), atol=1e-6)


def test_gradients_are_finite_and_nonzero():
    raw = torch.randn(len(LABELS), 8, requires_grad=True)
    loss = multi_positive_infonce(F.normalize(raw, dim=1), LABELS, 0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(raw.grad).all()
    assert raw.grad.abs().sum() > 0


def test_matches_the_formula_on_a_tiny_batch():
    codes = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1])
    sims = codes @ codes.T / 0.5
    expected = []
    for anchor in (0, 1):  # anchor 2 has no positive and is left out
        other = 1 - anchor
        denominator = sum(math.exp(sims[anchor, j]) for j in range(3) if j != anchor)
        expected.append(-math.log(math.exp(sims[anchor, other]) / denominator))
    assert multi_positive_infonce(codes, labels, 0.5).item() == pytest.approx(np.mean(expected), rel=1e-5)


def test_style_image_is_a_positive_of_its_stylization(tmp_path):
    split = make_split(tmp_path, "train", n_styles=3, per_style=2, size=16, styles_per_shard=3)
    samples = list(wds.WebDataset(complete_shards(split), shardshuffle=False, empty_check=False))
    rng = np.random.default_rng(0)
    draws = [draw_from_sample(sample, 1, rng) for sample in samples]  # K=1: stylization + style image
    batch = assemble(draws, 16, rng, two_views=False)
    assert batch["images"].shape == (6, 3, 16, 16)
    assert batch["labels"].tolist() == [label_id(f"st0-{i}") for i in range(3) for _ in range(2)]
    # Only the style image shares each stylization's label, and that is enough for a positive.
    codes = clustered_codes(torch.tensor([0, 0, 1, 1, 2, 2]))
    loss = supcon_loss(codes, batch["labels"], codes, batch["labels"], 0, 0.1)
    assert torch.isfinite(loss) and 0 < loss.item() < 0.5
    unrelated = supcon_loss(codes, torch.tensor([0, 1, 2, 3, 4, 5]), codes,
                            torch.tensor([0, 1, 2, 3, 4, 5]), 0, 0.1)
    assert unrelated.item() == 0.0  # no anchor has a positive: nothing to learn


def test_two_view_term_prefers_matching_views():
    view_a = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    close = F.normalize(view_a + 0.05 * torch.randn(8, 16), dim=1)
    unrelated = F.normalize(torch.randn(8, 16), dim=1)
    assert two_view_loss(view_a, close, 0.1) < two_view_loss(view_a, unrelated, 0.1) - 1.0


def test_augment_gives_random_views_of_the_same_images(tmp_path):
    split = make_split(tmp_path, "train", n_styles=3, per_style=2, size=16, styles_per_shard=3)
    samples = list(wds.WebDataset(complete_shards(split), shardshuffle=False, empty_check=False))
    draws = [draw_from_sample(sample, 1, np.random.default_rng(0)) for sample in samples]
    plain = assemble(draws, 16, np.random.default_rng(1), two_views=False)
    again = assemble(draws, 16, np.random.default_rng(1), two_views=False)
    augmented = assemble(draws, 16, np.random.default_rng(1), two_views=False, augment=True)
    assert torch.equal(plain["images"], again["images"])  # no augmentation: the decoded images
    assert augmented["images"].shape == plain["images"].shape
    assert torch.equal(augmented["labels"], plain["labels"]) and "views" not in augmented
    assert not torch.allclose(augmented["images"], plain["images"], atol=0.02)
