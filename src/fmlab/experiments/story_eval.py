"""Scores of a story-continuation model on test stories (digits of the test split).

For every test story and frame f ≥ 1 the model draws the frame's codes from its caption ("then a
four") and, with cross-attention, the source frame's codes; the VQ decoder paints them. Measured
on the painted frames, never read from the inputs:

- ``colour_consistency``: the hue name of the frame equals the source frame's
  (:func:`fmlab.data.attributes.colour_names`);
- ``thickness_consistency``: the measured stroke width falls in the source frame's tercile bin
  (terciles of frames rendered from *training* digits);
- ``style_consistency``: both at once;
- ``digit_accuracy``: the held-out MNIST LeNet-5 (on the frame's brightest channel) reads the
  caption's digit.

The same scores of the real frames and of their VQ reconstructions are the ceilings (``real_*``,
``recon_*``); chance for colour is about 1/6, for thickness about 1/3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.data.attributes import AttributeBinner, colour_names, digit_attributes
from fmlab.experiments.story import digits_pool, frame_codes
from fmlab.story.data import frame_captions, render_stories

__all__ = ["evaluate_stories", "story_scores"]


def _decode(vq: Any, codes: torch.Tensor, side: int, batch: int = 500) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(codes), batch):
            x = vq.decode(codes[i:i + batch].view(-1, side, side))
            out.append(((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    return np.concatenate(out)


def _thickness_binner(cfg: Any) -> AttributeBinner:
    images, labels = digits_pool(cfg, "train")
    s = render_stories(images, labels, 3000, seed=12345, frames=1)
    grey = s["frames"][:, 0].max(-1)
    return AttributeBinner().fit({"thickness": digit_attributes(grey)["thickness"]})


def story_scores(frames: np.ndarray, sources: np.ndarray, digits: np.ndarray,
                 binner: AttributeBinner, lenet: Any) -> dict[str, float]:
    """The four scores of RGB ``frames`` (N, H, W, 3) against their ``sources`` and ``digits``."""
    same_colour = np.array(colour_names(frames)) == np.array(colour_names(sources))
    bins = [binner.bins({"thickness": digit_attributes(x.max(-1))["thickness"]})["thickness"]
            for x in (frames, sources)]
    same_thick = bins[0] == bins[1]
    with torch.no_grad():
        pred = lenet(torch.as_tensor(np.ascontiguousarray(frames.max(-1)))).argmax(1).numpy()
    return {"colour_consistency": float(same_colour.mean()),
            "thickness_consistency": float(same_thick.mean()),
            "style_consistency": float((same_colour & same_thick).mean()),
            "digit_accuracy": float((pred == digits).mean())}


def _sample(model: Any, src: torch.Tensor, emb: torch.Tensor, cfg: Any, batch: int = 200
            ) -> torch.Tensor:
    gen = torch.Generator().manual_seed(cfg.eval.seed)
    model.eval()
    out = []
    for i in range(0, len(emb), batch):
        s = src[i:i + batch] if model.has_cross else None
        out.append(model.sample(emb[i:i + batch], s, generator=gen,
                                temperature=cfg.eval.temperature, top_k=cfg.eval.top_k))
    return torch.cat(out)


def evaluate_stories(cfg: Any, vq: Any, model: Any, out: Path) -> dict[str, Any]:
    """Generate every later frame of ``eval.stories`` test stories; scores, ceilings, a sheet."""
    from fmlab.experiments.textgan_data import embed_captions
    from fmlab.experiments.unlearn import load_classifier

    n, frames = cfg.eval.stories, cfg.data.frames
    images, labels = digits_pool(cfg, "test")
    s = render_stories(images, labels, n, seed=cfg.eval.seed + 1, frames=frames)
    flat = s["frames"].reshape(-1, *s["frames"].shape[2:])
    codes = frame_codes(vq, flat).view(n, frames, -1)
    side = int(round(codes.shape[2] ** 0.5))
    src = codes[:, :1].expand(-1, frames - 1, -1).reshape(-1, codes.shape[2])
    caps = frame_captions(s["digits"][:, 1:].ravel())
    emb = torch.from_numpy(embed_captions(caps, cfg.data.encoder))
    fake = _decode(vq, _sample(model, src, emb, cfg), side)
    sources = np.repeat(s["frames"][:, 0], frames - 1, axis=0)
    real = s["frames"][:, 1:].reshape(-1, *flat.shape[1:])
    recon = _decode(vq, codes[:, 1:].reshape(-1, codes.shape[2]), side)
    digits = s["digits"][:, 1:].ravel()
    binner, lenet = _thickness_binner(cfg), load_classifier("lenet5_mnist", None, cfg.data.data_root)
    res = story_scores(fake, sources, digits, binner, lenet)
    res.update({f"real_{k}": v for k, v in story_scores(real, sources, digits, binner, lenet).items()})
    res.update({f"recon_{k}": v for k, v in story_scores(recon, sources, digits, binner, lenet).items()})
    write_sheet(s["frames"][:8, 0], fake.reshape(n, frames - 1, *flat.shape[1:])[:8],
                [caps[i * (frames - 1):(i + 1) * (frames - 1)] for i in range(min(8, n))],
                out / "story_sheet.png", title=f"{cfg.method}: source frame, then generated frames")
    return {"test_stories": n, "generated_frames": len(fake), **res}


def write_sheet(sources: np.ndarray, generated: np.ndarray, captions: list[list[str]],
                path: Path, title: str) -> Path:
    """One row per story: the source frame (boxed) then the generated frames, captions below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.utils.io import atomic_path

    rows, cols = len(sources), generated.shape[1] + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.55 * rows), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(sources[r] if c == 0 else generated[r, c - 1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("source" if c == 0 else captions[r][c - 1], fontsize=7)
            if c == 0:
                for sp in ax.spines.values():
                    sp.set_edgecolor("white")
                    sp.set_linewidth(2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
