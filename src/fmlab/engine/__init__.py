"""fmlab.engine — the one training loop (config, optimisers, schedules, checkpoints, logs, DDP).

The engine knows no objective's maths. Everything it needs is in the two contracts below.

Contract with objectives
------------------------
An objective is an ``nn.Module``; ``loss, logs = objective(batch)``:

* ``batch``: dict of tensors already on the training device, after the transform;
* ``loss``: a scalar tensor (the engine divides it by ``trainer.accumulate`` before backward);
* ``logs``: dict of floats or 0-d tensors; the engine averages them over the log window (and over
  ranks) and writes them under ``"logs"`` in ``metrics.jsonl``.

Optional members, used when present:

* ``on_train_start(max_steps)`` — called once per ``fit`` before the optimiser is built and
  before a checkpoint is loaded (so lazily created parameters are optimised, and restored state
  wins over anything it initialises);
* ``on_before_optimizer_step(step, max_steps)`` — after backward, before clipping and the step
  (e.g. DINO cancelling the last layer's gradient);
* ``on_after_optimizer_step(step, max_steps)`` — after the step: EMA teacher / momentum encoder
  updates (:class:`EMA`, :func:`cosine_momentum`), queues, temperature schedules. ``step`` is
  the 0-based index of the step just taken, ``0 <= step < max_steps``;
* ``encoder`` — the module exported as ``RUN_DIR/encoder.safetensors`` (+ ``encoder.json``) at
  the end, and embedded by the monitors;
* ``embed(images) -> Tensor (N, D)`` — what monitors call on uint8 images (default:
  ``encoder.encode``, else ``encoder(images)``).

Manual optimisation (Lightning style), for objectives with several optimisers such as a GAN's
D and G (:class:`fmlab.gan.objective.GANObjective`):

* ``configure_optimizers(optim: dict[str, OptimConfig]) -> dict[str, torch.optim.Optimizer]`` —
  built from the Trainer's named optim configs (``Trainer(..., optim={"g": ..., "d": ...})``);
  the engine gives each optimiser an LR schedule from its config of the same name, checkpoints
  each state as ``optimizer_<name>`` and restores it on resume;
* ``training_step(batch, optimizers, step, generator) -> dict[str, float]`` — runs the step's
  own ``zero_grad`` / ``backward`` / ``step`` calls (under bf16 autocast with
  ``trainer.bf16``); ``generator`` is a CPU ``torch.Generator`` seeded from (seed, step, rank);
  the returned floats are checked for NaN/inf every step (:class:`DivergenceError`) and logged
  as window means, with ``lr_<name>`` added. ``trainer.accumulate`` must be 1 and
  ``trainer.grad_clip`` 0. Under ``torchrun`` rank 0's weights are broadcast once and every
  ``optimizer.step()`` first averages its gradients over ranks (no DDP wrapper, no distributed
  code in the objective).

Objectives with neither keep the default path: ``loss.backward()`` (divided by
``trainer.accumulate``), gradient clipping, one optimiser from ``optim``, DDP under ``torchrun``.

Callbacks (:class:`Callback`, e.g. :class:`CPUBudget`) run around the steps: periodic evaluations,
sample grids, budgets, exports; their ``state_dict`` is checkpointed (see
:mod:`fmlab.engine.callbacks` for the hook order).

Parameters with ``requires_grad=False`` (e.g. an :class:`EMA` copy) are not optimised. No weight
decay on norms, biases, 1-D parameters, or names containing ``temperature``, ``logit_scale``,
``logit_bias`` (:func:`split_decay_params`). All state worth resuming must live in the
objective's ``state_dict`` (parameters and buffers): it is saved in safetensors.
Random ops should use the global torch RNG (re-seeded from (seed, step, rank) every step) so a
resumed run draws the same numbers.

Contract with data
------------------
A training source is anything with ``__len__`` and ``get_batch(indices: np.ndarray)`` returning a
dict of tensors/arrays (e.g. ``{"images": uint8 (B,H,W[,C]), "labels": int64}``); a bare array is
taken as ``{"images": ...}`` plus ``labels`` from ``source.labels`` when present
(:class:`TensorSource` is the in-memory one). Each epoch is a ``torch.randperm`` seeded with
``seed + epoch``; a step takes ``batch_size * accumulate`` consecutive indices, micro-batch by
micro-batch, and rank ``r`` of ``W`` takes ``[r::W]`` of each micro-batch (DistributedSampler
with drop_last). The checkpoint records (epoch, position). An optional
``transform(batch, generator) -> batch`` runs on the training device after the move; its
``torch.Generator`` is seeded from (seed, step, rank).

Entry points: :class:`Trainer` (``Trainer(obj, source, TrainerConfig(...), OptimConfig(...),
ScheduleConfig(...), run_dir=..., callbacks=[...]).fit(resume=None)``), :func:`load_config`,
:func:`init_distributed`, :func:`gather_with_grad`, :func:`all_reduce_mean`, :class:`EMA`,
:class:`LARS`, :class:`EmbeddingMonitor`.

``fmlab.engine.config`` imports no torch; the other names load on first use.
"""

from __future__ import annotations

from fmlab.utils.lazy import lazy_exports

_EXPORTS = {
    "TrainerConfig": "config", "OptimConfig": "config", "ScheduleConfig": "config",
    "MonitorConfig": "config", "EngineConfig": "config", "load_config": "config",
    "save_config": "config", "config_to_dict": "config", "apply_override": "config",
    "Trainer": "trainer", "FitResult": "trainer", "DivergenceError": "trainer",
    "Callback": "callbacks", "CPUBudget": "callbacks", "LogWindow": "window",
    "TensorSource": "data", "epoch_permutation": "data",
    "LARS": "optim", "build_optimizer": "optim", "param_groups": "optim",
    "split_decay_params": "optim",
    "LRSchedule": "schedule", "warmup_cosine": "schedule", "cosine_momentum": "schedule",
    "EMA": "ema",
    "DistInfo": "distributed", "init_distributed": "distributed",
    "gather_with_grad": "distributed", "all_reduce_mean": "distributed",
    "all_gather_nograd": "distributed", "get_rank": "distributed",
    "get_world_size": "distributed",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "latest_checkpoint": "checkpoint", "save_weights": "checkpoint",
    "first_non_finite": "checkpoint", "write_safetensors": "checkpoint",
    "EmbeddingMonitor": "monitors", "CollapseWarning": "monitors", "knn_accuracy": "monitors",
    "ValidationMonitor": "monitors", "trainable_snapshot": "monitors", "restore_snapshot": "monitors",
    "knn_predict": "monitors", "collapse_stats": "monitors", "check_collapse": "monitors",
    "MetricsLogger": "logger", "read_metrics": "logger",
    "resolve_device": "device", "resolve_run_dir": "rundir",
    "ClassificationObjective": "objectives",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
