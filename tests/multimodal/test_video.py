"""X-CLIP pieces (fmlab.multimodal.video): tiny models on random clips and a few render_video clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.multimodal.video import XCLIP, VideoPrompt, XCLIPConfig, video_to_float
from fmlab.multimodal.video_objective import XCLIPObjective

TINY = dict(frames=4, image_size=8, patch_size=4, width=16, depth=2, heads=2, embed_dim=8)


def _clips(b: int = 3, t: int = 4, s: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, s, s), generator=g, dtype=torch.uint8)


def _model(seed: int = 0, **kw) -> XCLIP:
    torch.manual_seed(seed)
    return XCLIP(**{**TINY, **kw}).eval()


def test_without_messages_frame_features_are_the_encoder_on_each_frame_alone():
    model = _model(messages=False)
    clips = _clips()
    x = video_to_float(clips, 1)
    with torch.no_grad():
        frames, patches = model.encode_frames(clips)
        for t in range(clips.shape[1]):
            alone = model.encoder.vit.forward_tokens(x[:, t])  # one frame, no other frame in sight
            torch.testing.assert_close(frames[:, t], model.proj(model.encoder.vit(x[:, t])))
            torch.testing.assert_close(patches[:, t], model.proj(alone[:, 1:]))


@pytest.mark.parametrize("messages", [False, True])
def test_messages_are_the_only_path_between_frames(messages):
    model = _model(messages=messages)
    clips = _clips()
    other = clips.clone()
    other[:, 0] = 255 - other[:, 0]  # change frame 0 only
    with torch.no_grad():
        a, _ = model.encode_frames(clips)
        b, _ = model.encode_frames(other)
    assert not torch.allclose(a[:, 0], b[:, 0])
    moved = (a[:, 1:] - b[:, 1:]).abs().max().item()
    assert (moved > 1e-4) if messages else (moved == 0.0)


def test_shapes_grey_and_rgb():
    model = _model()
    k = 5
    text = torch.randn(k, 8)
    v, t = model(_clips(b=2), text)
    assert v.shape == (2, 8) and t.shape == (2, k, 8)
    frames, patches = model.encode_frames(_clips(b=2))
    assert frames.shape == (2, 4, 8) and patches.shape == (2, 4, 4, 8)
    rgb = _model(channels=3)
    clips = torch.randint(0, 256, (2, 3, 8, 8, 3), dtype=torch.uint8)  # fewer frames than built for is fine
    v, t = rgb(clips, text)
    assert v.shape == (2, 8) and t.shape == (2, k, 8)
    assert rgb(_clips(b=2), text)[0].shape == (2, 8)  # grey clips repeated to 3 channels
    obj = XCLIPObjective(model, text)
    assert obj.logits(_clips(b=2)).shape == (2, k)


def test_alpha_starts_at_one_tenth_and_learns():
    model = _model()
    assert model.prompt.alpha.item() == pytest.approx(0.1)
    assert XCLIPConfig().alpha == 0.1
    obj = XCLIPObjective(model, torch.randn(3, 8))
    loss, _ = obj({"images": _clips(), "labels": torch.tensor([0, 1, 2])})
    loss.backward()
    assert model.prompt.alpha.grad is not None and model.prompt.alpha.grad.abs().item() > 0


def test_alpha_zero_prompting_is_the_identity():
    model = _model(alpha=0.0)
    text = torch.randn(5, 8)
    with torch.no_grad():
        _, prompted = model(_clips(), text)
    assert torch.equal(prompted, text.expand(3, 5, 8))
    prompt = VideoPrompt(8, 2)
    with torch.no_grad():
        prompt.alpha.fill_(0.0)
        assert torch.equal(prompt(text, torch.randn(2, 7, 8)), text.expand(2, 5, 8))
        prompt.alpha.fill_(0.1)
        assert not torch.allclose(prompt(text, torch.randn(2, 7, 8)), text.expand(2, 5, 8))


def test_prompted_class_embeddings_depend_on_the_video():
    model = _model()
    text = torch.randn(5, 8)
    with torch.no_grad():
        _, t = model(_clips(b=2), text)
    assert not torch.allclose(t[0], t[1])


def test_mean_pool_baseline_ignores_frame_order_xclip_does_not():
    clips = _clips()
    reversed_ = clips.flip(1)
    base = XCLIP(XCLIPConfig.baseline(**TINY)).eval()
    assert not (base.config.messages or base.config.mit or base.config.prompts)
    with torch.no_grad():
        torch.testing.assert_close(base(clips, torch.randn(2, 8))[0], base(reversed_, torch.randn(2, 8))[0])
        for flags in ({"messages": True, "mit": False}, {"messages": False, "mit": True}, {}):
            xclip = _model(**flags)
            text = torch.randn(2, 8)
            diff = (xclip(clips, text)[0] - xclip(reversed_, text)[0]).abs().max().item()
            assert diff > 1e-4, flags


def test_baseline_config():
    c = XCLIPConfig.baseline(width=32)
    assert (c.messages, c.mit, c.prompts, c.width) == (False, False, False, 32)
    model = XCLIP(c)
    assert model.mit is None and model.prompt is None and not hasattr(model.encoder, "msg_fc")


def test_bad_input_raises_clear_errors():
    with pytest.raises(ConfigError, match="heads"):
        XCLIPConfig(width=10, heads=3)
    with pytest.raises(ConfigError, match="patch_size"):
        XCLIPConfig(image_size=10, patch_size=4)
    with pytest.raises(ConfigError, match="channels"):
        XCLIPConfig(channels=2)
    model = _model()
    with pytest.raises(DataError, match="images"):
        model(torch.zeros(2, 8, 8, dtype=torch.uint8), torch.randn(3, 8))
    with pytest.raises(DataError, match="frames=4"):
        model(_clips(t=6), torch.randn(3, 8))
    with pytest.raises(ModelError, match="class embeddings"):
        model(_clips(), torch.randn(3, 7))
    with pytest.raises(DataError, match="channels=3"):
        model(torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8), torch.randn(3, 8))
    obj = XCLIPObjective(model, torch.randn(3, 8))
    with pytest.raises(DataError, match="labels"):
        obj({"images": _clips(), "labels": torch.tensor([0, 1, 3])})
    with pytest.raises(ModelError, match="class_embeddings"):
        XCLIPObjective(model, [1, 2])


class _TextTable(nn.Module):
    """A tiny trainable text side: one learnable embedding per class."""

    def __init__(self, k: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(k, dim)

    def forward(self) -> torch.Tensor:
        return self.table.weight


def test_text_module_is_trained_with_the_model():
    text = _TextTable(3, 8)
    obj = XCLIPObjective(_model(), text)
    names = {n for n, _ in obj.named_parameters()}
    assert "text_fn.table.weight" in names and "logit_scale" in names
    loss, _ = obj({"images": _clips(), "labels": torch.tensor([0, 1, 2])})
    loss.backward()
    assert text.table.weight.grad is not None
    assert obj.logit_scale.exp().item() == pytest.approx(1 / 0.07)


def test_short_fit_on_render_video_clips_lowers_the_loss():
    from fmlab.data.synthetic.video import render_video
    from fmlab.engine import OptimConfig, ScheduleConfig, Trainer, TrainerConfig, TensorSource

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (4, 8, 8), dtype=np.uint8)
    out = render_video(pool, np.arange(4), np.arange(16), seed=0, frames=4, size=8, object_size=4)
    labels = out["directions"][:, 0]
    src = TensorSource(out["frames"], labels)
    torch.manual_seed(0)
    obj = XCLIPObjective(XCLIP(**TINY), torch.randn(8, 8))
    batch = src.get_batch(np.arange(len(src)))
    with torch.no_grad():
        obj.eval()
        before = obj(batch)[0].item()
    Trainer(obj, src, TrainerConfig(max_steps=30, batch_size=8, log_every=10, progress=False,
                                    tensorboard=False, device="cpu"),
            OptimConfig(lr=3e-3, weight_decay=0.0), ScheduleConfig(name="constant")).fit()
    with torch.no_grad():
        obj.eval()
        after = obj(batch)[0].item()
    assert after < 0.8 * before
