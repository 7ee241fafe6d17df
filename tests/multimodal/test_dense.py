"""DenseCLIP pieces (fmlab.multimodal.dense) and mIoU (fmlab.metrics.segmentation): fast, offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.metrics.segmentation import iou_per_class, mean_iou
from fmlab.models import create_backbone
from fmlab.multimodal.dense_objective import DenseCLIPObjective, canvas_batch
from fmlab.multimodal.dense import (
    ClassPrompts,
    ContextDecoder,
    DenseCLIP,
    DenseImageEncoder,
    MeanTokenEncoder,
    score_map,
)

K, WIDTH = 3, 16


def _model(language: bool = True, context_prompting: bool = True, seed: int = 0) -> DenseCLIP:
    torch.manual_seed(seed)
    bb = create_backbone("resnet_cifar", depth=8, width=8, seed=seed)
    prompts = ClassPrompts(torch.randn(K, 2, 12), MeanTokenEncoder(12, WIDTH), n_ctx=8) if language else None
    return DenseCLIP(bb, prompts, K, WIDTH, language=language, context_prompting=context_prompting,
                     heads=2, hidden=16)


def _canvas(n: int = 8, size: int = 32) -> dict:
    """A tiny canvas batch over a synthetic pool: three distinct shapes as classes 0, 1, 2."""
    from fmlab.data.synthetic.canvas import render_canvas

    pool = np.zeros((6, 12, 12), np.uint8)
    pool[0::3, 2:10, 2:10] = 255  # filled square
    pool[1::3, 5:7, :] = 255  # bar
    pool[1::3, :, 5:7] = 255  # ... a cross
    pool[2::3, 2:10:2, 2:10] = 255  # stripes
    return canvas_batch(render_canvas(pool, np.arange(6) % 3, np.arange(n), seed=0, size=size, max_objects=2))


def test_score_map_shape_and_equals_normalised_einsum():
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(2, WIDTH, 5, 4, generator=g), torch.randn(2, K, WIDTH, generator=g)
    s = score_map(z, t)
    assert s.shape == (2, K, 5, 4)  # the (H, W, K) map, channel-first
    zn = z / z.norm(dim=1, keepdim=True)
    tn = t / t.norm(dim=-1, keepdim=True)
    explicit = torch.stack([torch.stack([(zn[b] * tn[b, k][:, None, None]).sum(0) for k in range(K)])
                            for b in range(2)])
    torch.testing.assert_close(s, explicit, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(score_map(z, t[0]), score_map(z, t[0].expand(2, -1, -1)))  # shared (K, D)
    with pytest.raises(ModelError, match="width"):
        score_map(z, torch.randn(K, WIDTH + 1))


def test_model_score_map_has_k_channels_at_feature_resolution():
    model = _model()
    logits, s = model(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    assert s.shape == (2, K, 8, 8) and logits.shape == (2, K + 1, 16, 16)
    assert model.head.in_channels == model.encoder.channels + K
    assert float(s.detach().abs().max()) <= 1 + 1e-5


def test_gamma_starts_at_1e4_and_is_trainable():
    dec = _model().decoder
    assert dec.gamma.item() == pytest.approx(1e-4)
    assert dec.gamma.requires_grad and dec.gamma.ndim == 0
    model = _model()
    assert any(p is model.decoder.gamma for p in model.parameters())
    obj = DenseCLIPObjective(model)
    loss, _ = obj(_canvas(2))
    loss.backward()
    assert model.decoder.gamma.grad is not None and model.decoder.gamma.grad.abs() > 0


def test_gamma_zero_returns_text_unchanged():
    dec = ContextDecoder(WIDTH, layers=2, heads=2, dim=16)
    with torch.no_grad():
        dec.gamma.zero_()
    t, visual = torch.randn(K, WIDTH), torch.randn(2, 1 + 9, WIDTH)
    out = dec(t, visual)
    assert out.shape == (2, K, WIDTH)
    torch.testing.assert_close(out, t.expand(2, -1, -1), atol=0, rtol=0)
    with torch.no_grad():
        dec.gamma.fill_(1.0)
    assert not torch.allclose(dec(t, visual), out)  # and with γ ≠ 0 the image does change it


def test_without_context_prompting_text_is_the_prompts_output():
    model = _model(context_prompting=False)
    assert model.decoder is None
    feats = model.encoder(torch.zeros(2, 32, 32, dtype=torch.uint8))
    torch.testing.assert_close(model.text_embeddings(feats), model.prompts().expand(2, -1, -1))


def test_language_free_baseline_has_no_text_parameters_and_c_channel_head():
    base = _model(language=False)
    names = [n for n, _ in base.named_parameters()]
    assert base.prompts is None and base.decoder is None and base.encoder.proj is None
    assert not any(n.startswith(("prompts", "decoder", "encoder.proj", "encoder.attn")) for n in names)
    assert base.head.in_channels == base.encoder.channels  # C, not C + K
    obj = DenseCLIPObjective(base)
    assert obj.background is None
    _, logs = obj(_canvas(2))
    assert "loss_aux" not in logs
    full = _model()
    extra = sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in base.parameters())
    assert extra > 0
    # same backbone and head architecture apart from the K extra input channels
    assert [n for n in names if n.startswith("encoder.backbone")] == \
        [n for n, _ in full.named_parameters() if n.startswith("encoder.backbone")]


def test_aux_loss_is_the_weighted_ce_of_the_score_map():
    model = _model()
    model.eval()
    batch = _canvas(2)
    obj0, obj1 = DenseCLIPObjective(model, aux_weight=0.0), DenseCLIPObjective(model, aux_weight=0.5, tau=0.1)
    with torch.no_grad():
        l0, logs0 = obj0(batch)
        l1, logs1 = obj1(batch)
        _, s = model(batch["images"])
        bg = torch.zeros(2, 1, *s.shape[2:])
        aux = F.cross_entropy(F.interpolate(torch.cat([bg, s / 0.1], 1), size=(32, 32), mode="bilinear",
                                            align_corners=False), batch["masks"])
    assert "loss_aux" not in logs0
    torch.testing.assert_close(logs1["loss_aux"], aux)
    torch.testing.assert_close(l1, l0 + 0.5 * aux)


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ConfigError, match="prompts"):
        DenseCLIP(create_backbone("resnet_cifar", depth=8, width=8), None, K, WIDTH)
    with pytest.raises(ConfigError, match="tau"):
        DenseCLIPObjective(_model(language=False), tau=0.0)
    with pytest.raises(ConfigError, match="heads"):
        DenseImageEncoder(create_backbone("resnet_cifar", depth=8, width=8), 10, heads=4)
    obj = DenseCLIPObjective(_model(language=False))
    batch = _canvas(2)
    with pytest.raises(DataError, match="masks"):
        obj({"images": batch["images"], "masks": batch["masks"] + K + 1})
    with pytest.raises(DataError, match="masks"):
        obj({"images": batch["images"]})


def test_canvas_batch_masks_are_semantic_classes():
    batch = _canvas(4)
    assert batch["images"].dtype == torch.uint8 and batch["masks"].dtype == torch.int64
    assert batch["masks"].shape == (4, 32, 32)
    assert set(batch["masks"].unique().tolist()) <= set(range(K + 1)) and batch["masks"].max() > 0


@pytest.mark.parametrize("language", [True, False])
def test_trainer_fit_lowers_the_loss(language):
    from fmlab.engine import OptimConfig, ScheduleConfig, Trainer, TrainerConfig
    from fmlab.engine.data import TensorSource

    batch = _canvas(8)
    obj = DenseCLIPObjective(_model(language=language))
    src = TensorSource(batch["images"], masks=batch["masks"])
    with torch.no_grad():
        obj.eval()
        before = obj(batch)[0].item()
    Trainer(obj, src, TrainerConfig(max_steps=20, batch_size=8, log_every=10, progress=False,
                                    tensorboard=False, device="cpu"),
            OptimConfig(lr=3e-3), ScheduleConfig(name="constant")).fit()
    with torch.no_grad():
        obj.eval()
        after = obj(batch)[0].item()
    assert after < 0.7 * before


def test_mean_iou_hand_computed():
    t = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    assert mean_iou(t, t, 2) == 1.0
    assert mean_iou(1 - t, t, 2) == 0.0
    # 2-class case: pred marks one extra pixel as class 1.
    p = t.copy()
    p[0, 1] = 1
    # class 0: inter 3, union 4 -> 0.75; class 1: inter 4, union 5 -> 0.8
    assert mean_iou(p, t, 2) == pytest.approx((0.75 + 0.8) / 2)
    assert mean_iou(p, t, 2, ignore_background=True) == pytest.approx(0.8)
    np.testing.assert_allclose(iou_per_class(torch.as_tensor(p), torch.as_tensor(t), 3), [0.75, 0.8, np.nan])
    assert mean_iou(p, t, 3) == pytest.approx((0.75 + 0.8) / 2)  # absent class 2 is skipped


def test_mean_iou_rejects_bad_maps():
    with pytest.raises(DataError, match="pred"):
        mean_iou(np.zeros(4), np.zeros(5), 2)
    with pytest.raises(DataError, match="target"):
        mean_iou(np.zeros(4), np.full(4, 2), 2)
    with pytest.raises(ConfigError, match="num_classes"):
        mean_iou(np.zeros(4), np.zeros(4), 0)


def test_mean_pooling_is_the_mean_pixel_embedding():
    enc = DenseImageEncoder(create_backbone("resnet_cifar", depth=8, width=8, seed=0), WIDTH, pooling="mean")
    f = enc(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    assert enc.attn is None
    torch.testing.assert_close(f.z_global, f.z.mean(dim=(2, 3)))
    torch.testing.assert_close(f.z, torch.einsum("bchw,dc->bdhw", f.x, enc.proj.weight[:, :, 0, 0])
                               + enc.proj.bias[None, :, None, None], atol=1e-5, rtol=1e-5)


def test_masks_larger_than_the_backbone_input():
    """A 64×64 canvas: the backbone sees 32×32, the losses and predictions work at the mask size."""
    model = _model()
    batch = _canvas(2, size=64)
    loss, logs = DenseCLIPObjective(model)(batch)
    assert torch.isfinite(loss) and set(logs) == {"loss_seg", "loss_aux", "pixel_acc"}
    model.eval()
    pred = model.predict(batch["images"])
    assert pred.shape == (2, 64, 64) and pred.dtype == torch.int64
    assert 0 <= mean_iou(pred, batch["masks"], K + 1) <= 1


def test_coop_prompt_learner_of_a_real_text_tower_plugs_in(tiny_model):
    """The text side can be an ImageTextModel's tower with CoOp context (PromptLearner, M = 8)."""
    from fmlab.adapt.coop import PromptLearner

    prompts = PromptLearner(tiny_model, ["square", "cross", "stripes"], n_ctx=8)
    model = DenseCLIP(tiny_model.image, prompts, K, 16, heads=2, hidden=16)
    loss, _ = DenseCLIPObjective(model)(_canvas(2))
    loss.backward()
    assert prompts.ctx.shape == (8, 32) and prompts.ctx.grad is not None and prompts.ctx.grad.abs().sum() > 0
