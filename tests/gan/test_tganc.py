"""TGANs-C objective and clip data: caption classes, the three coherence variants, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.data.synthetic.video import DIRECTIONS
from fmlab.engine import OptimConfig, ScheduleConfig, TensorSource, Trainer, TrainerConfig
from fmlab.errors import ConfigError, DataError
from fmlab.gan.matching import MatchingAwareLoss
from fmlab.gan.video import FrameDiscriminator, MotionDiscriminator, VideoDiscriminator, VideoGenerator
from fmlab.gan.video_data import (
    ClipClassifier,
    FrameClassifier,
    caption_class,
    caption_of_class,
    render_clips,
)
from fmlab.gan.video_objective import TGANCObjective, clips_to_gan

E = 5


def _objective(coherence: str, mismatch: bool = True, seed: int = 0) -> TGANCObjective:
    torch.manual_seed(seed)
    kw = dict(e_dim=E, c_dim=3, ch=4)
    G = VideoGenerator(z_dim=6, frames=8, size=16, **kw)
    motion = MotionDiscriminator(**kw) if coherence == "motion" else None
    return TGANCObjective(G, VideoDiscriminator(**kw), FrameDiscriminator(**kw),
                          MatchingAwareLoss("vanilla", mismatch=mismatch), coherence, 0.5, motion)


def _source(n: int = 16) -> TensorSource:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (n, 8, 16, 16), dtype=torch.uint8, generator=g)
    ids = torch.arange(n) % 4
    return TensorSource(frames, ids, frames=frames, caption_emb=torch.randn(4, E, generator=g)[ids],
                        caption_ids=ids)


def _fit(obj: TGANCObjective, steps: int, run_dir=None, resume=None, every: int = 0):
    cfg = TrainerConfig(max_steps=steps, batch_size=8, device="cpu", progress=False,
                        tensorboard=False, log_every=1, checkpoint_every=every)
    opt = {"g": OptimConfig(lr=1e-3), "d": OptimConfig(lr=1e-3)}
    const = ScheduleConfig(name="constant")  # a cosine's rates would depend on max_steps
    return Trainer(obj, _source(), cfg, opt, const, run_dir=run_dir).fit(resume=resume)


def test_caption_class_round_trip_and_clip_rendering():
    ids = caption_class(np.array([0, 9, 4]), np.array([7, 0, 3]), np.array([1, 0, 1]))
    assert len(set(ids.tolist())) == 3 and ids.max() < 160
    assert [a.tolist() for a in caption_of_class(ids)] == [[0, 9, 4], [7, 0, 3], [1, 0, 1]]
    pool = (np.random.default_rng(0).random((20, 28, 28)) > 0.7).astype(np.uint8) * 255
    clips = render_clips(pool, np.arange(20) % 10, 12, seed=3)
    assert clips["frames"].shape == (12, 8, 32, 32)
    digits, dirs, speeds = caption_of_class(clips["caption_ids"])
    for c, d, r, s in zip(clips["captions"], digits, dirs, speeds, strict=True):
        assert c.split()[2] == str(d) and ("fast" if s else "slow") in c
        assert c.endswith("moving " + DIRECTIONS[r])
    assert ClipClassifier(8)(clips_to_gan(torch.from_numpy(clips["frames"]))).shape == (12, 8)


@pytest.mark.parametrize("coherence", ["none", "penalty", "motion"])
def test_each_coherence_variant_trains_with_its_own_terms(coherence):
    res = _fit(_objective(coherence), 2)
    logs = res.history[-1]["logs"] if "logs" in res.history[-1] else res.history[-1]
    assert ("g_coherence" in logs) == (coherence == "penalty")
    assert ("d_motion" in logs) == (coherence == "motion")
    assert all(np.isfinite(v) for v in logs.values() if isinstance(v, float))


def test_bad_configuration_is_refused_by_name():
    with pytest.raises(ConfigError, match="coherence: 'jitter'"):
        _objective("jitter")
    with pytest.raises(DataError, match="uint8"):
        clips_to_gan(torch.zeros(2, 8, 16, 16))


def test_resume_is_bit_identical(tmp_path):
    straight = _objective("motion")
    _fit(straight, 4)
    cut = _objective("motion")
    _fit(cut, 2, run_dir=tmp_path, every=2)
    resumed = _objective("motion", seed=5)  # different init: everything must come from the checkpoint
    _fit(resumed, 4, run_dir=tmp_path, resume=tmp_path, every=2)
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_config_mbstd_reaches_every_discriminator():
    from fmlab.experiments.tganc import build_tganc
    from fmlab.experiments.tganc_config import load_tganc_config

    cfg = load_tganc_config(None, ["model.d_mbstd=true", "gan.coherence=motion", "model.d_ch=4",
                                   "model.g_ch=4"])
    obj = build_tganc(cfg, e_dim=E)
    for _, D, _ in obj.discriminators():
        assert D.mbstd and D.head.psi.in_features == D.feature_dim + 1
    plain = build_tganc(load_tganc_config(None, ["model.d_ch=4", "model.g_ch=4"]), e_dim=E)
    assert not plain.D_video.mbstd and plain.D_video.head.psi.in_features == plain.D_video.feature_dim


def test_frame_classifier_reads_frames_not_their_order():
    torch.manual_seed(0)
    net = FrameClassifier(10, ch=4).eval()
    x = torch.rand(3, 8, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(net(x), net(x[:, torch.randperm(8)]))
    one = net(x[:, :1])  # a clip of one frame repeated scores as that frame
    torch.testing.assert_close(net(x[:, :1].repeat(1, 8, 1, 1, 1)), one)
    with pytest.raises(DataError, match="FrameClassifier"):
        net(torch.zeros(3, 1, 16, 16))
