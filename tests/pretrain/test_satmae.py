"""SatMAE++ multi-scale MAE: per-scale target shapes, reduction to MAE, weighted sum of scales."""

from __future__ import annotations

import pytest
import torch

from fmlab.data.masks import random_patch_mask
from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import MAE, SatMAE
from fmlab.pretrain.satmae import patchify_at, unpatchify_at, upsample_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def _vit(chans: int = 3) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=8, patch_size=2, in_chans=chans, embed_dim=32, depth=1,
                             num_heads=2)


def _batch(n: int, size: int, chans: int = 3, length: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    m = random_patch_mask(n, length, 0.75, g)
    return {"images": torch.randn(n, chans, size, size, generator=g), "ids_keep": m.ids_keep}


def test_each_scale_predicts_a_target_of_its_shape():
    obj = SatMAE(_vit(), decoder_dim=32, decoder_depth=1, decoder_heads=2, scales=(1, 2, 4))
    images = torch.randn(3, 3, 32, 32)  # the top scale: 4 x the 8 px input
    views = obj._views(images)
    assert [tuple(v.shape[-2:]) for v in views] == [(8, 8), (8, 8), (16, 16), (32, 32)]
    assert torch.equal(views[-1], images)  # the 4x target is the crop itself: its detail is kept
    batch = _batch(3, 32)
    latent = obj.encoder.forward_tokens(views[0], ids_keep=batch["ids_keep"])
    preds = obj.decode_scales(latent, batch["ids_keep"])
    for s, pred, target in zip((1, 2, 4), preds, views[1:]):
        assert pred.shape == (3, (4 * s) ** 2, 2 * 2 * 3)
        assert patchify_at(target, 2).shape == pred.shape
    loss, logs = obj(batch)
    assert {"loss_x1", "loss_x2", "loss_x4"} <= set(logs) and torch.isfinite(loss)


def test_single_scale_is_exactly_mae():
    mae = MAE(_vit(), decoder_dim=32, decoder_depth=1, decoder_heads=2)
    sat = SatMAE(_vit(), decoder_dim=32, decoder_depth=1, decoder_heads=2, scales=(1,))
    sat.load_state_dict(mae.state_dict())  # strict: (1,) adds no module
    batch = _batch(4, 8)
    assert torch.equal(sat(batch)[0], mae(batch)[0])


def test_loss_is_the_weighted_sum_of_the_scale_losses():
    obj = SatMAE(_vit(), decoder_dim=32, decoder_depth=1, decoder_heads=2,
                 scale_weights=(1.0, 0.5, 0.25))
    loss, logs = obj(_batch(2, 32))
    ref = logs["loss_x1"] + 0.5 * logs["loss_x2"] + 0.25 * logs["loss_x4"]
    assert torch.allclose(loss.detach(), ref, atol=1e-6)


def test_fine_masks_cover_exactly_the_coarse_masked_patches():
    g = torch.Generator().manual_seed(3)
    mask = random_patch_mask(5, 16, 0.75, g).mask
    fine = upsample_mask(mask, 4, 4)
    assert fine.float().mean() == mask.float().mean()
    assert torch.equal(fine.view(5, 16, 16)[:, ::4, ::4].reshape(5, 16), mask)
    x = torch.randn(2, 3, 12, 12)
    assert torch.equal(unpatchify_at(patchify_at(x, 3), 3, 3), x)


@pytest.mark.parametrize("chans", [1, 4])
def test_any_channel_count(chans):
    obj = SatMAE(_vit(chans), decoder_dim=32, decoder_depth=1, decoder_heads=2, scales=(1, 2))
    loss, _ = obj(_batch(2, 16, chans))
    loss.backward()
    assert obj.scale_pred[0].out_channels == 2 * 2 * chans


def test_bad_scales_and_sizes_are_refused():
    with pytest.raises(ConfigError, match="scales"):
        SatMAE(_vit(), scales=(1, 3))
    with pytest.raises(ConfigError, match="scale_weights"):
        SatMAE(_vit(), scales=(1, 2), scale_weights=(1.0,))
    with pytest.raises(DataError, match="8px or 32px"):
        SatMAE(_vit(), decoder_dim=32)(_batch(2, 12))
