"""Workflow of ``fmlab caption attack`` (papers.md #56): controlled captions through adversarial δ.

1. Attacked images: the first ``images`` test images. Each gets a target digit t ≠ its class
   (seeded draw) and a target image x_t: a test image of class t from outside the attacked set,
   preferring one the victim captions with t. The target caption is the victim's caption of x_t.
2. For every ε: the feature-space attack (‖h(x+δ) − h(x_t)‖² + c‖δ‖_p) and the output-layer
   attack (maximise log p(target caption | x+δ)), both by projected sign-gradient steps; success
   (:func:`fmlab.caption.attack.caption_success`) on the victim, and the digit success of the
   same x+δ on the ``transfer`` captioner (its own encoder and decoder).
3. The attack generator (δ = ε·tanh(G(x)), one fixed target: a test image of ``target_digit``)
   trained with the engine on the victim's training images, scored on the test images of other
   classes (one forward pass each), victim and transfer.

Writes ``attack.json``, ``success_vs_eps.png`` and ``attacked.png`` (clean / adversarial /
target with captions).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.caption.attack import (
    AttackGenerator,
    GeneratorAttackObjective,
    caption_success,
    feature_attack,
    output_attack,
)
from fmlab.caption.data import digit_word_of
from fmlab.caption.models import NormalisedEncoder, to_unit
from fmlab.errors import ConfigError
from fmlab.experiments.caption import CaptionerBundle, load_captioner, load_splits
from fmlab.experiments.caption_config import CaptionAttackConfig, CaptionDataConfig
from fmlab.utils.io import write_json

__all__ = ["run_caption_attack"]


def _targets(bundle: CaptionerBundle, x: torch.Tensor, y: np.ndarray, n: int, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """``(target digit, target image index)`` per attacked image (pool: images n..end)."""
    rng = np.random.default_rng(seed)
    t = (y[:n] + rng.integers(1, 10, size=n)) % 10
    pool = np.arange(n, len(y))
    named = np.array([digit_word_of(c) for c in bundle.caption(x[pool])])
    idx = np.empty(n, dtype=np.int64)
    for i, d in enumerate(t):
        good = pool[(y[pool] == d) & (named == d)]
        cands = good if len(good) else pool[y[pool] == d]
        if not len(cands):
            raise ConfigError(f"images: no test image of digit {d} left outside the attacked set")
        idx[i] = cands[rng.integers(len(cands))]
    return t, idx


def _score(bundle: CaptionerBundle, transfer: CaptionerBundle | None, x_adv: torch.Tensor, targets: list[str],
           clean: list[str], t: np.ndarray) -> tuple[dict[str, float], list[str]]:
    caps = bundle.caption(x_adv)
    res = caption_success(caps, targets, clean, [int(d) for d in t])
    if transfer is not None:
        res["transfer_digit"] = float(np.mean([digit_word_of(c) == d for c, d in zip(transfer.caption(x_adv), t)]))
    return res, caps


def _train_generator(cfg: CaptionAttackConfig, bundle: CaptionerBundle, images: np.ndarray,
                     x_target: torch.Tensor) -> AttackGenerator:
    from fmlab.engine import OptimConfig, ScheduleConfig, TensorSource, Trainer, TrainerConfig

    g = cfg.generator
    torch.manual_seed(cfg.seed)
    gen = AttackGenerator(g.eps, g.width, int(images.shape[-1]))
    with torch.no_grad():
        h_t = bundle.encoder(x_target)
    obj = GeneratorAttackObjective(gen, NormalisedEncoder(bundle.clip.image), h_t, cfg.c, cfg.p)
    tcfg = TrainerConfig(max_steps=g.steps, batch_size=g.batch_size, seed=cfg.seed, progress=False,
                         tensorboard=False, log_every=max(1, g.steps // 5), device="cpu")
    Trainer(obj, TensorSource(images[:g.images]), tcfg, OptimConfig(lr=g.lr),
            ScheduleConfig(name="constant")).fit()
    return gen.eval().requires_grad_(False)


def _per_eps(cfg: CaptionAttackConfig, victim: CaptionerBundle, transfer: CaptionerBundle | None,
             x: torch.Tensor, x_t: torch.Tensor, t: np.ndarray) -> tuple[list[dict], dict]:
    clean = victim.caption(x)
    target_ids = victim.greedy_ids(x_t)
    targets = [victim.vocab.decode(r.tolist()) for r in target_ids]
    rows, shown = [], {}
    for eps in cfg.eps:
        for kind in ("feature", "output"):
            if kind == "feature":
                d = feature_attack(victim.encoder, x, x_t, eps, cfg.steps, cfg.c, cfg.p)
            else:
                d = output_attack(victim.encoder, victim.decoder, x, target_ids, eps, cfg.steps)
            res, caps = _score(victim, transfer, x + d, targets, clean, t)
            rows.append({"attack": kind, "eps": eps, "linf": float(d.abs().amax()), **res})
            if kind == "feature":
                shown[eps] = (d[:6].clone(), caps[:6])
    return rows, {"clean": clean, "targets": targets, "shown": shown}


def run_caption_attack(cfg: CaptionAttackConfig, out: Path) -> dict[str, Any]:
    """Run every attack of ``cfg`` on the victim; write the JSON and the two pictures into ``out``."""
    t0 = time.perf_counter()
    victim = load_captioner(cfg.victim)
    transfer = load_captioner(cfg.transfer) if cfg.transfer else None
    sp = load_splits(CaptionDataConfig(**victim.info["data"]))
    x_all, y_all = to_unit(torch.as_tensor(sp.images["test"])), sp.labels["test"]
    n = cfg.images
    if n >= len(y_all):
        raise ConfigError(f"images: {n} attacked images leave no target pool among the "
                          f"{len(y_all)} test images of the victim's run")
    t, idx = _targets(victim, x_all, y_all, n, cfg.seed)
    x, x_t = x_all[:n], x_all[idx]
    rows, info = _per_eps(cfg, victim, transfer, x, x_t, t)
    clean_res, _ = _score(victim, transfer, x, info["targets"], info["clean"], t)  # ε = 0: the floor
    # the generator: one fixed target image of target_digit, other-class test images
    pool = np.flatnonzero(y_all[n:] == cfg.target_digit) + n
    named = [digit_word_of(c) == cfg.target_digit for c in victim.caption(x_all[pool])]
    x_gt = x_all[pool[int(np.argmax(named))]][None]  # the first one the victim calls target_digit
    gen = _train_generator(cfg, victim, sp.images["images"], x_gt)
    others = torch.as_tensor(np.flatnonzero(y_all != cfg.target_digit))
    xo = x_all[others]
    with torch.no_grad():
        x_adv = xo + gen(xo)
    gt = np.full(len(xo), cfg.target_digit)
    g_res, _ = _score(victim, transfer, x_adv, victim.caption(x_gt) * len(xo), victim.caption(xo), gt)
    g_res.update(eps=cfg.generator.eps, linf=float((x_adv - xo).abs().amax()), images=len(xo))
    summary = {"per_image": rows, "clean": clean_res, "generator": g_res, "images": n, "seconds": time.perf_counter() - t0,
               "victim": cfg.victim, "transfer": cfg.transfer or None}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "attack.json", summary)
    _plot_curve(rows, g_res, out / "success_vs_eps.png", transfer is not None)
    _plot_examples(x, x_t, info, max(cfg.eps, key=lambda e: -abs(e - 0.2)), out / "attacked.png")
    return {"summary": summary}


def _plot_curve(rows: list[dict], g_res: dict, path: Path, with_transfer: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.utils.io import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for kind, colour in (("feature", "C0"), ("output", "C1")):
        rs = [r for r in rows if r["attack"] == kind]
        eps = [r["eps"] for r in rs]
        ax.plot(eps, [r["digit"] for r in rs], "o-", color=colour, label=f"{kind}: target digit")
        ax.plot(eps, [r["exact"] for r in rs], "s:", color=colour, label=f"{kind}: exact caption")
        if with_transfer:
            ax.plot(eps, [r["transfer_digit"] for r in rs], "^--", color=colour, alpha=0.6,
                    label=f"{kind}: transfer digit")
    ax.plot([g_res["eps"]], [g_res["digit"]], "k*", ms=11, label="generator (fixed target): digit")
    ax.set(xlabel="ε (ℓ∞, pixel scale)", ylabel="success rate", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _plot_examples(x: torch.Tensor, x_t: torch.Tensor, info: dict, eps: float, path: Path) -> None:
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.utils.io import atomic_path

    delta, caps = info["shown"][eps]
    k = len(caps)
    fig, axes = plt.subplots(3, k, figsize=(2.4 * k, 7.6))
    rows = (("clean", x[:k], info["clean"][:k]), (f"feature attack ε={eps:g}", (x[:k] + delta), caps),
            ("target", x_t[:k], info["targets"][:k]))
    for r, (name, imgs, texts) in enumerate(rows):
        for i in range(k):
            ax = axes[r, i]
            ax.imshow(imgs[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title("\n".join(textwrap.wrap(texts[i], 22)), fontsize=7)
            ax.axis("off")
        axes[r, 0].text(-0.15, 0.5, name, transform=axes[r, 0].transAxes, rotation=90, va="center",
                        ha="right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
