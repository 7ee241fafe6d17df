"""``caption.encoder: clip:<run folder>`` — the text GANs' captions embedded by an image-text
run's text tower + projection (T2I-SupCon part (a)), cached by the run's weights hash."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError
from fmlab.experiments import textgan_data
from fmlab.experiments.textgan_data import _encoder_id, embed_captions

pytestmark = pytest.mark.usefixtures("one_thread")
CAPTIONS = ["a thick seven slanted to the left", "the digit two", "a thin grey one, upright",
            "the digit two"]


def test_clip_encoder_gives_the_models_text_embedding_and_caches_it(saved_clip, tmp_path, monkeypatch):
    from fmlab.multimodal.io import load_image_text_model

    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path))
    name = f"clip:{saved_clip}"
    emb = embed_captions(CAPTIONS, name)
    with torch.no_grad():
        want = load_image_text_model(saved_clip).encode_text(CAPTIONS).numpy()
    assert emb.shape == (4, 16)
    torch.testing.assert_close(torch.from_numpy(emb), torch.from_numpy(want), rtol=1e-5, atol=1e-5)
    assert [p.parent.name for p in tmp_path.rglob("captions-*.npz")] == ["textgan"]

    def no_encoder(_name):
        raise AssertionError("a cache hit must not build the encoder")

    monkeypatch.setattr(textgan_data, "_text_encode_fn", no_encoder)
    again = embed_captions(CAPTIONS, name)
    assert (again == emb).all()
    ident = _encoder_id(name)
    assert ident.startswith("clip@") and str(saved_clip) not in ident  # hashes, not the path
    assert ident != _encoder_id("text:minilm")


@pytest.mark.parametrize("value", ["clip:", "clip:/nonexistent/run"])
def test_a_bad_clip_encoder_is_refused_naming_the_key(value, tmp_path):
    from fmlab.experiments.gan_config import load_gan_config

    with pytest.raises(ConfigError, match="caption.encoder"):
        embed_captions(CAPTIONS, value, cache=False)
    with pytest.raises(ConfigError, match="caption.encoder"):
        load_gan_config(None, [f"caption.encoder={value}"])
    (tmp_path / "clip_model.json").write_text("{}")  # a description without weights
    with pytest.raises(ConfigError, match="caption.encoder.*no weights"):
        _encoder_id(f"clip:{tmp_path}")


def test_an_unknown_encoder_name_is_refused_naming_the_key():
    from fmlab.experiments.gan_config import load_gan_config

    with pytest.raises(ConfigError, match="caption.encoder: 'bert-base'"):
        load_gan_config(None, ["caption.encoder=bert-base"])
    assert load_gan_config(None, ["caption.encoder=text:minilm"]).caption.encoder == "text:minilm"
