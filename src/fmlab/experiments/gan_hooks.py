"""What ``fmlab gan train`` does around the engine's steps: run.json, sample grids, periodic and
final evaluations (logged, stored), the exported generator. One engine callback.

The final evaluation is a step of its own that a resumed run completes: it runs when
``metrics.jsonl`` holds no evaluation record at the final step, so a run killed after its final
checkpoint but during that evaluation gets it on ``--resume`` (probe F3).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from torch import nn

from fmlab.engine.callbacks import Callback, CPUBudget
from fmlab.engine.config import config_to_dict
from fmlab.engine.logger import read_metrics
from fmlab.experiments.gan_config import GANConfig
from fmlab.experiments.gan_data import GANTrainData
from fmlab.experiments.gan_eval import (
    evaluate_fakes,
    flat_metrics,
    make_extractor,
    open_reference,
    result_rows,
)
from fmlab.gan import sample_grid
from fmlab.gan.io import RUN_JSON, export_generator, generate_images
from fmlab.gan.objective import GANObjective
from fmlab.utils.io import write_json


class GANRunHooks(Callback):
    """Grids every ``samples.every`` steps, metrics every ``eval.every`` steps, and at the end
    the final grid, the final evaluation and ``generator.safetensors`` (rank 0 only).

    Args:
        cfg: the run's config.
        objective: the trained :class:`GANObjective`.
        data: the training images (class names, provenance for ``run.json``).
        run_dir: the run directory.
        specs: ``(generator spec, discriminator spec)`` as :func:`build_nets` returns them.
        budget: the run's :class:`CPUBudget` (its CPU time is logged with each evaluation).
        db: the results store, or None for none.
    """

    key = "gan_run"

    def __init__(self, cfg: GANConfig, objective: GANObjective, data: GANTrainData,
                 run_dir: Path, specs: tuple[dict[str, Any], dict[str, Any]],
                 budget: CPUBudget, db: Path | None) -> None:
        self.cfg, self.objective, self.data, self.run_dir = cfg, objective, data, run_dir
        self.g_spec, self.d_spec = specs
        self.budget, self.db = budget, db
        self.num_classes = data.num_classes if cfg.data.conditional else 0
        self.run_id: str | None = None
        self.metrics: dict[str, float] | None = None
        self.last_grid = self.last_eval = -1
        self._eval_ctx: tuple[Any, Any] | None = None

    @property
    def G_eval(self) -> nn.Module:
        """What grids, metrics and the export use: the EMA generator when there is one."""
        if self.objective.G_ema is not None and self.cfg.eval.use_ema:
            return self.objective.G_ema.module
        return self.objective.G

    def eval_context(self) -> tuple[Any, Any]:
        """(reference split, feature extractor), opened once; a missing reference or weights
        file fails here, before any training, rather than at the first evaluation."""
        if self._eval_ctx is None:
            e = self.cfg.eval
            self._eval_ctx = (open_reference(e.ref, self.cfg.data.data_root),
                              make_extractor(e.features, e.features_weights,
                                             self.cfg.data.data_root, e.batch_size))
        return self._eval_ctx

    # ------------------------------------------------------------------ engine hooks

    def on_fit_start(self, trainer: Any, resumed_from: int | None) -> None:
        if trainer.is_main:
            self.run_id = self._run_info(trainer)["run_id"]

    def on_after_step(self, trainer: Any) -> None:
        step, c = trainer.step, self.cfg
        if c.samples.every and step % c.samples.every == 0:
            self.write_grid(trainer)
        if c.eval.every and step % c.eval.every == 0:
            self.log_eval(trainer)

    def on_fit_end(self, trainer: Any) -> None:
        step = trainer.step
        if self.last_grid != step:
            self.write_grid(trainer)
        if self.cfg.eval.final and self.last_eval != step and not self._eval_logged(step):
            self.log_eval(trainer)
        if trainer.is_main:
            self.export(step)

    # ------------------------------------------------------------------ outputs

    def _run_info(self, trainer: Any) -> dict[str, Any]:
        from fmlab.results import new_run_id

        path = self.run_dir / RUN_JSON
        old = json.loads(path.read_text()) if path.is_file() else {}
        info = {"run_id": old.get("run_id") or new_run_id(), "name": self.cfg.name,
                "generator": self.g_spec, "discriminator": self.d_spec,
                "class_names": self.data.class_names if self.num_classes else None,
                "data": self.data.info(), "steps_per_epoch": len(self.data) // trainer.cfg.batch_size}
        write_json(path, info)
        return info

    def write_grid(self, trainer: Any) -> None:
        """``samples/step_XXXXXX.png`` of the eval generator on fixed z."""
        self.last_grid = trainer.step
        if trainer.is_main:
            s = self.cfg.samples
            sample_grid(self.G_eval, s.n, self.run_dir / "samples" / f"step_{trainer.step:06d}.png",
                        seed=s.seed)

    def _eval_logged(self, step: int) -> bool:
        return any("eval" in r and r.get("step") == step for r in read_metrics(self.run_dir))

    def evaluate(self, step: int) -> dict[str, Any]:
        """Metrics of ``eval.n`` samples of the eval generator, stored when there is a db."""
        e = self.cfg.eval
        ref, ext = self.eval_context()
        t0 = time.perf_counter()
        images, labels = generate_images(self.G_eval, e.n, e.seed, batch_size=e.batch_size)
        res = evaluate_fakes(images, labels, ref, ext, list(e.metrics),
                             num_classes=self.num_classes, seed=e.seed, ref_n=e.ref_n or None)
        res["protocol"]["generator"] = {**self.g_spec, "ema": self.G_eval is not self.objective.G,
                                        "step": step, "run_dir": str(self.run_dir)}
        return self.store_eval(res, step, t0)

    def store_eval(self, res: dict[str, Any], step: int, t0: float) -> dict[str, Any]:
        """Append an evaluation's rows (with its protocol) to the results store when there is a
        db; add its wall seconds since ``t0``."""
        if self.db is not None:
            from fmlab.results import ResultsStore

            ResultsStore(self.db).append(result_rows(
                res, run_id=self.run_id or "", method=self.cfg.name, seed=self.cfg.trainer.seed,
                source=self.cfg.eval.ref, hyperparameters=config_to_dict(self.cfg.gan),
                extra={"step": step, "train_cpu_s": round(self.budget.used_s, 2)}))
        res["seconds"] = time.perf_counter() - t0
        return res

    def log_eval(self, trainer: Any) -> None:
        """Evaluate (rank 0) and log ``{"step", "eval", "eval_seconds", "train_cpu_s"}``."""
        self.last_eval = trainer.step
        if not trainer.is_main:
            return
        res = self.evaluate(trainer.step)
        flat = flat_metrics({k: v for k, v in res.items() if k != "seconds"})
        trainer.log({"step": trainer.step, "eval": flat, "eval_seconds": round(res["seconds"], 2),
                     "train_cpu_s": round(self.budget.used_s, 3)})  # a FID-vs-budget curve
        self.metrics = flat

    def export(self, step: int) -> Path:
        """``generator.safetensors`` + ``generator.json`` of the eval generator."""
        G = self.G_eval
        return export_generator(
            G, self.g_spec, self.run_dir, ema=G is not self.objective.G, step=step,
            num_classes=self.num_classes,
            class_names=self.data.class_names if self.num_classes else None,
            z_dim=int(G.z_dim), img_shape=list(G.img_shape), config=config_to_dict(self.cfg))
