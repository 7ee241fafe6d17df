"""``fmlab gan train``: a GAN training loop assembled from the engine's pieces.

Why not :class:`fmlab.engine.Trainer`: it drives one objective with one optimiser and one
backward per step, while a GAN step is two updates with two optimisers (D, then G with D
frozen) — :func:`fmlab.gan.gan_step` owns that. Everything around the step is the engine's:
typed config + ``--set`` (:func:`load_config`), optimisers and LR schedules, seeded epoch
permutations and batch indices, per-step seeding (:func:`mix_seed`), SIGKILL-safe checkpoints,
``metrics.jsonl`` + TensorBoard + progress bar (:class:`MetricsLogger`).

Exact resume: the batch of step t, and every random draw of the step (z, labels, DiffAugment,
AdaptiveMix, the global RNG), are functions of (seed, t) alone; G, D, EMA-G, both optimiser
states, the GAN state (step, LeCam anchors) and the CPU-time budget used are checkpointed
together. So ``train to 10 + resume to 20`` equals ``train to 20`` bit for bit on CPU.

Run directory::

    config.yaml  run.json  metrics.jsonl  fmlab.db  checkpoints/  samples/step_XXXXXX.png
    generator.safetensors  generator.json          (the final EMA generator, rebuildable)
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmlab.engine import checkpoint as ckpt
from fmlab.engine.config import config_to_dict, save_config
from fmlab.engine.data import epoch_permutation, fetch_batch, micro_batch_indices, mix_seed
from fmlab.engine.logger import MetricsLogger, truncate_metrics
from fmlab.engine.optim import build_optimizer
from fmlab.engine.schedule import LRSchedule
from fmlab.errors import ConfigError, DataError, FmlabError
from fmlab.experiments.gan_config import GANConfig, load_gan_config
from fmlab.experiments.gan_data import GANTrainData, load_train_data
from fmlab.experiments.gan_eval import (
    evaluate_fakes,
    flat_metrics,
    make_extractor,
    open_reference,
    result_rows,
)
from fmlab.experiments.gan_io import build_nets
from fmlab.gan.io import RUN_JSON, export_generator, generate_images
from fmlab.gan import EMA, GANState, GANStepConfig, gan_step, sample_grid, to_gan_input
from fmlab.gan.regularizers import LeCamEMA
from fmlab.utils.io import write_json

__all__ = ["GANConfig", "GANDivergenceError", "GANRunResult", "GANTrainer", "load_gan_config",
           "train_gan"]


class GANDivergenceError(FmlabError):
    """A loss became NaN or infinite; the last checkpoint is left untouched."""


class GANModules(nn.Module):
    """G, D and the EMA copy of G in one module: one ``state_dict`` for the checkpoint."""

    def __init__(self, G: nn.Module, D: nn.Module, G_ema: EMA | None) -> None:
        super().__init__()
        self.G = G
        self.D = D
        self.G_ema = G_ema


@dataclass
class GANRunResult:
    run_dir: Path
    step: int
    max_steps: int
    resumed_from: int | None
    train_cpu_s: float
    metrics: dict[str, Any] | None = None     # the last evaluation (flat), if any
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by_budget: bool = False


class _Window:
    """Mean of the step logs since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.t0 = time.perf_counter()

    def add(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            if k != "step":
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in sorted(self.sums.items())}


class GANTrainer:
    """Builds everything a run needs from a :class:`GANConfig`; :meth:`fit` trains."""

    def __init__(self, cfg: GANConfig, run_dir: str | os.PathLike,
                 data: GANTrainData | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.data = data if data is not None else load_train_data(cfg.data)
        t = cfg.trainer
        self.spe = len(self.data) // t.batch_size
        if self.spe == 0:
            raise ConfigError(f"trainer.batch_size: {t.batch_size} is larger than the "
                              f"{len(self.data)} training images")
        self.max_steps = t.max_steps or t.epochs * self.spe
        self.num_classes = self.data.num_classes if cfg.data.conditional else 0
        self.device = self._device()
        # initial weights are a function of trainer.seed (a resumed run overwrites them anyway)
        torch.default_generator.manual_seed(mix_seed(t.seed, -1))
        G, D, self.g_spec, self.d_spec = build_nets(cfg, self.num_classes)
        ema = (EMA(G, cfg.ema.decay, cfg.ema.start_step) if cfg.ema.enabled else None)
        self.nets = GANModules(G, D, ema).to(self.device)
        self.step_cfg = GANStepConfig(**vars(cfg.gan))
        self.opt_g = build_optimizer(self.nets.G, cfg.optim_g)
        self.opt_d = build_optimizer(self.nets.D, cfg.optim_d)
        s = cfg.schedule
        warm = s.warmup_steps or round(s.warmup_epochs * self.spe)
        self.sched = [LRSchedule(o.lr, self.max_steps, warm, s.min_lr, s.name, o.weight_decay,
                                 s.final_weight_decay) for o in (cfg.optim_g, cfg.optim_d)]
        self.state = GANState(ema=ema)
        self.train_cpu_s = 0.0
        self._eval_ctx: tuple[Any, Any] | None = None
        self._perm: Any = None
        self._perm_epoch = -1
        self.run_id: str | None = None

    # ------------------------------------------------------------------------ set-up

    def _device(self) -> torch.device:
        name = self.cfg.trainer.device
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(name)
        except RuntimeError:
            raise ConfigError(f"trainer.device: {name!r} is not a torch device") from None

    @property
    def G_eval(self) -> nn.Module:
        """What grids, metrics and the export use: the EMA generator when there is one."""
        if self.nets.G_ema is not None and self.cfg.eval.use_ema:
            return self.nets.G_ema.module
        return self.nets.G

    def _run_info(self) -> dict[str, Any]:
        from fmlab.results import new_run_id

        path = self.run_dir / RUN_JSON
        old = {}
        if path.is_file():
            import json

            old = json.loads(path.read_text())
        info = {"run_id": old.get("run_id") or new_run_id(), "name": self.cfg.name,
                "generator": self.g_spec, "discriminator": self.d_spec,
                "class_names": self.data.class_names if self.num_classes else None,
                "data": self.data.info(), "steps_per_epoch": self.spe}
        write_json(path, info)
        return info

    # ------------------------------------------------------------------------ checkpoints

    def _checkpoint_state(self) -> dict[str, Any]:
        lecam = self.state.lecam
        return {
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "gan_state": {"step": self.state.step,
                          "lecam": lecam.state_dict() if lecam is not None else None,
                          "extra": dict(self.state.extra)},
            "data": {"seed": self.cfg.trainer.seed, "num_samples": len(self.data),
                     "steps_per_epoch": self.spe,
                     "selection_sha256": self.data.selection_sha256},
            "rng": ckpt.rng_state(),
            "max_steps": self.max_steps,
            "train_cpu_s": self.train_cpu_s,
        }

    def _save(self) -> None:
        ckpt.save_checkpoint(self.run_dir, self.state.step, self.nets, self._checkpoint_state(),
                             keep_last=self.cfg.trainer.keep_last)

    def _restore(self, ref: ckpt.CheckpointRef) -> None:
        state = ckpt.load_checkpoint(ref, self.nets, self.device)
        data = state["data"]
        mine = {"num_samples": len(self.data), "steps_per_epoch": self.spe,
                "seed": self.cfg.trainer.seed, "selection_sha256": self.data.selection_sha256}
        keys = {"num_samples": "data.limit / data.fraction", "selection_sha256":
                "data.limit / data.fraction / data.fraction_seed", "steps_per_epoch":
                "trainer.batch_size", "seed": "trainer.seed"}
        for k, v in mine.items():
            if data.get(k) != v:
                raise ConfigError(f"{ref.state}: the run had {k}={data.get(k)!r}, this config "
                                  f"gives {v!r}; keep {keys[k]} when resuming")
        self.opt_g.load_state_dict(state["optimizer_g"])
        self.opt_d.load_state_dict(state["optimizer_d"])
        gs = state["gan_state"]
        self.state.step = int(gs["step"])
        self.state.extra = dict(gs.get("extra") or {})
        if gs.get("lecam") is not None:
            self.state.lecam = LeCamEMA(self.step_cfg.lecam_decay, self.step_cfg.lecam_start)
            self.state.lecam.load_state_dict(gs["lecam"])
        self.train_cpu_s = float(state.get("train_cpu_s", 0.0))
        ckpt.set_rng_state(state["rng"])
        if self.state.step != ref.step:
            raise DataError(f"{ref.state}: step {self.state.step} disagrees with the checkpoint "
                            f"name (step {ref.step})")

    # ------------------------------------------------------------------------ one step

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The real batch of ``step``: the engine's permutation of epoch ``step // spe``."""
        c, d = self.cfg.trainer, self.cfg.data
        epoch, pos = divmod(step, self.spe)
        if self._perm_epoch != epoch:
            self._perm = epoch_permutation(len(self.data), c.seed, epoch)
            self._perm_epoch = epoch
        b = fetch_batch(self.data, micro_batch_indices(self._perm, pos, c.batch_size))
        x = to_gan_input(b["images"], d.channels, d.img_size).to(self.device)
        y = b["labels"].to(self.device) if self.num_classes else None
        return x, y

    def train_step(self) -> dict[str, float]:
        step = self.state.step
        seed = self.cfg.trainer.seed
        torch.default_generator.manual_seed(mix_seed(seed, step))
        gen = torch.Generator().manual_seed(mix_seed(seed, step, 0, 1))
        lr_g = self.sched[0].apply(self.opt_g, step)
        lr_d = self.sched[1].apply(self.opt_d, step)
        x, y = self.batch(step)
        # trainer.bf16: the forward passes run under bfloat16 autocast (matmuls and convs), the
        # weights, optimiser states and the EMA generator stay float32
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                            enabled=self.cfg.trainer.bf16):
            logs = gan_step(self.nets.G, self.nets.D, self.opt_g, self.opt_d, x, y,
                            self.step_cfg, gen, self.state)
        logs.update(lr_g=lr_g, lr_d=lr_d)
        return logs

    # ------------------------------------------------------------------------ side outputs

    def write_grid(self) -> Path:
        s = self.cfg.samples
        path = self.run_dir / "samples" / f"step_{self.state.step:06d}.png"
        sample_grid(self.G_eval, s.n, path, seed=s.seed)
        return path

    def eval_context(self) -> tuple[Any, Any]:
        """(reference split, feature extractor), opened once; a missing reference or weights
        file fails here, before any training, rather than at the first evaluation."""
        if self._eval_ctx is None:
            e = self.cfg.eval
            self._eval_ctx = (open_reference(e.ref, self.cfg.data.data_root),
                              make_extractor(e.features, e.features_weights,
                                             self.cfg.data.data_root, e.batch_size))
        return self._eval_ctx

    def evaluate(self, db: Path | None) -> dict[str, Any]:
        """Metrics of ``eval.n`` samples of the eval generator; logged and stored."""
        e = self.cfg.eval
        ref, ext = self.eval_context()
        t0 = time.perf_counter()
        images, labels = generate_images(self.G_eval, e.n, e.seed, batch_size=e.batch_size)
        metrics = list(e.metrics)
        res = evaluate_fakes(images, labels, ref, ext, metrics, num_classes=self.num_classes,
                             seed=e.seed, ref_n=e.ref_n or None)
        res["protocol"]["generator"] = {**self.g_spec, "ema": self.G_eval is not self.nets.G,
                                        "step": self.state.step, "run_dir": str(self.run_dir)}
        if db is not None:
            from fmlab.results import ResultsStore

            ResultsStore(db).append(result_rows(
                res, run_id=self.run_id or "", method=self.cfg.name, seed=self.cfg.trainer.seed,
                source=e.ref, hyperparameters=config_to_dict(self.cfg.gan),
                extra={"step": self.state.step, "train_cpu_s": round(self.train_cpu_s, 2)}))
        res["seconds"] = time.perf_counter() - t0
        return res

    def export(self) -> Path:
        return export_generator(
            self.G_eval, self.g_spec, self.run_dir, ema=self.G_eval is not self.nets.G,
            step=self.state.step, num_classes=self.num_classes,
            class_names=self.data.class_names if self.num_classes else None,
            z_dim=int(self.G_eval.z_dim), img_shape=list(self.G_eval.img_shape),
            config=config_to_dict(self.cfg))

    # ------------------------------------------------------------------------ the loop

    def fit(self, resume: bool = False, db: Path | None = None) -> GANRunResult:
        """Train to ``max_steps`` (or the CPU budget); ``resume`` continues from the latest
        checkpoint in ``run_dir`` (a run without one starts from scratch)."""
        cfg, t = self.cfg, self.cfg.trainer
        if cfg.eval.every or cfg.eval.final:
            self.eval_context()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        db = db if db is not None else self.run_dir / "fmlab.db"
        ref = ckpt.latest_checkpoint(self.run_dir) if resume else None
        if not resume and ckpt.latest_checkpoint(self.run_dir) is not None:
            raise ConfigError(f"{self.run_dir} already holds a run; pass --resume {self.run_dir} "
                              "to continue it, or choose a new --out")
        resumed_from = None
        if ref is not None:
            self._restore(ref)
            resumed_from = self.state.step
            truncate_metrics(self.run_dir, self.state.step)
        self.run_id = self._run_info()["run_id"]
        save_config(cfg, self.run_dir / "config.yaml")
        self.nets.train()
        logger = MetricsLogger(self.run_dir, tensorboard=t.tensorboard, progress=t.progress,
                               total=self.max_steps, initial=self.state.step)
        budget = cfg.cpu_minutes * 60.0
        history: list[dict[str, Any]] = []
        last = {"ckpt": self.state.step if ref is not None else -1, "grid": -1, "eval": -1}
        metrics = None
        stopped = False
        window = _Window()
        try:
            while self.state.step < self.max_steps:
                if budget and self.train_cpu_s >= budget:
                    stopped = True
                    break
                c0 = time.process_time()
                logs = self.train_step()
                self.train_cpu_s += time.process_time() - c0
                step = self.state.step
                window.add(logs)
                logger.advance(1)
                if not (math.isfinite(logs["d_loss"]) and math.isfinite(logs["g_loss"])):
                    raise GANDivergenceError(
                        f"d_loss={logs['d_loss']}, g_loss={logs['g_loss']} at step {step}; "
                        f"resume from the last checkpoint (step {max(last['ckpt'], 0)}) with "
                        f"lower optim_g.lr / optim_d.lr")
                if step % t.log_every == 0 or step == self.max_steps:
                    now = time.perf_counter()
                    rec = {"step": step, "epoch": (step - 1) // self.spe, "logs": window.means(),
                           "images_per_s": t.batch_size * window.steps / max(now - window.t0,
                                                                             1e-9),
                           "train_cpu_s": round(self.train_cpu_s, 3)}
                    logger.log(rec)
                    history.append(rec)
                    logger.advance(0, d=f"{rec['logs']['d_loss']:.3f}",
                                   g=f"{rec['logs']['g_loss']:.3f}")
                    window = _Window()
                if cfg.samples.every and step % cfg.samples.every == 0:
                    self.write_grid()
                    last["grid"] = step
                if cfg.eval.every and step % cfg.eval.every == 0:
                    metrics = self._log_eval(db, logger, history)
                    last["eval"] = step
                if t.checkpoint_every and step % t.checkpoint_every == 0 \
                        and step < self.max_steps:
                    self._save()
                    last["ckpt"] = step
            step = self.state.step
            if last["ckpt"] != step:
                self._save()
            if last["grid"] != step:
                self.write_grid()
            if cfg.eval.final and last["eval"] != step and resumed_from != step:
                metrics = self._log_eval(db, logger, history)
            self.export()
        finally:
            logger.close()
        return GANRunResult(self.run_dir, self.state.step, self.max_steps, resumed_from,
                            self.train_cpu_s, metrics, history, stopped)

    def _log_eval(self, db: Path | None, logger: MetricsLogger,
                  history: list[dict[str, Any]]) -> dict[str, float]:
        res = self.evaluate(db)
        flat = flat_metrics({k: v for k, v in res.items() if k != "seconds"})
        rec = {"step": self.state.step, "eval": flat, "eval_seconds": round(res["seconds"], 2),
               "train_cpu_s": round(self.train_cpu_s, 3)}  # where a FID-vs-budget curve sits
        logger.log(rec)
        history.append(rec)
        return flat


def train_gan(cfg: GANConfig, run_dir: str | os.PathLike, resume: bool = False,
              db: str | os.PathLike | None = None) -> GANRunResult:
    """Train the GAN of ``cfg`` into ``run_dir`` (see the module docstring for the outputs)."""
    return GANTrainer(cfg, run_dir).fit(resume=resume, db=Path(db) if db is not None else None)
