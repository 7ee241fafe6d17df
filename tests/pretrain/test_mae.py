"""MAE: loss over masked patches only, normalised-pixel targets, decoding, falling loss."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import MAE, mae_loss, patch_targets

from .conftest import head_tail, train_losses


def _vit(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, **kw)


def test_norm_pix_target_standardises_each_patch():
    g = torch.Generator().manual_seed(0)
    patches = torch.rand(2, 5, 12, generator=g) * 3 + 1
    t = patch_targets(patches, norm_pix=True)
    for i in range(2):
        for j in range(5):
            p = patches[i, j]
            ref = (p - p.mean()) / torch.sqrt(((p - p.mean()) ** 2).mean() + 1e-6)
            assert torch.allclose(t[i, j], ref, atol=1e-5)
    assert torch.equal(patch_targets(patches, norm_pix=False), patches)


def test_loss_counts_masked_patches_only():
    g = torch.Generator().manual_seed(1)
    patches = torch.rand(3, 8, 6, generator=g)
    pred = torch.randn(3, 8, 6, generator=g)
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[:, ::2] = True
    loss = mae_loss(pred, patches, mask, norm_pix=False)
    other = pred.clone()
    other[~mask] += 10.0  # visible-patch predictions must not matter
    assert float(mae_loss(other, patches, mask, norm_pix=False)) == pytest.approx(float(loss))
    moved = pred.clone()
    moved[mask] += 1.0
    assert float(mae_loss(moved, patches, mask, norm_pix=False)) != pytest.approx(float(loss))
    # direct formula: sum_i m_i mean_d (pred - target)^2 / sum_i m_i
    per = ((pred - patches) ** 2).mean(-1)
    assert float(loss) == pytest.approx(float(per[mask].mean()), rel=1e-6)
    target = patch_targets(patches, True)
    assert float(mae_loss(target, patches, mask, norm_pix=True)) == pytest.approx(0.0, abs=1e-10)


def test_mae_uses_the_batch_mask_and_hides_masked_patches_from_the_encoder():
    obj = MAE(_vit(), decoder_dim=16, decoder_depth=1, decoder_heads=2).eval()
    x = torch.rand(2, 3, 16, 16)
    keep = torch.tensor([[0, 1, 2, 3], [4, 8, 12, 15]])
    _loss, logs = obj({"images": x, "ids_keep": keep})
    assert float(logs["mask_ratio"]) == pytest.approx(0.75)
    with torch.no_grad():
        latent = obj.encoder.forward_tokens(x, ids_keep=keep)
        y = x.clone()
        y[1, :, 0:4, 0:4] += 1.0  # patch 0 of sample 1 is masked: encoder output unchanged
        assert torch.allclose(obj.encoder.forward_tokens(y, ids_keep=keep), latent, atol=1e-6)
        pred = obj.decode(latent, keep)
    assert pred.shape == (2, 16, 48)
    torch.manual_seed(0)
    l1, _ = obj({"images": x})  # no mask in the batch: global RNG
    torch.manual_seed(0)
    l2, _ = obj({"images": x})
    assert float(l1.detach()) == float(l2.detach())


def test_mae_rejects_bad_setups():
    with pytest.raises(ConfigError, match="pos_embed"):
        MAE(_vit(pos_embed=False))
    with pytest.raises(ConfigError, match="VisionTransformer"):
        MAE(torch.nn.Linear(3, 3))
    obj = MAE(_vit(), decoder_dim=16, decoder_depth=1, decoder_heads=2)
    with pytest.raises(DataError, match="16px"):
        obj({"images": torch.rand(2, 3, 8, 8)})


def test_mae_loss_falls():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    base = torch.stack([yy * 15, xx * 15, (yy + xx) * 7], -1).float()
    images = (base[None] + torch.rand(32, 16, 16, 3, generator=g) * 60).clamp(0, 255)
    images = images.to(torch.uint8)
    obj = MAE(_vit(), decoder_dim=32, decoder_depth=1, decoder_heads=2)
    tf = MAE.default_transform(16, patch_size=4)

    def batch(step: int) -> dict:
        return tf({"images": images}, torch.Generator().manual_seed(step))

    b = batch(0)
    assert b["ids_keep"].shape == (32, 4) and b["mask"].sum(1).eq(12).all()
    first, last = head_tail(train_losses(obj, batch, steps=40))
    assert last < 0.8 * first
