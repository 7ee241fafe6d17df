"""Where a config-driven run writes, and which config it reads: one policy for every command.

``fmlab pretrain`` and ``fmlab gan train`` (and every config-driven command after them) take
``--config FILE --out RUN_DIR`` for a new run and ``--resume RUN_DIR`` to continue one in place,
reading the configuration saved there.
"""

from __future__ import annotations

import os
from pathlib import Path

from fmlab.errors import ConfigError


def resolve_run_dir(config: str | os.PathLike | None, out: str | os.PathLike | None,
                    resume: str | os.PathLike | None, *, example: str = "configs/<family>/<name>.yaml"
                    ) -> tuple[Path, Path]:
    """``(config file, run directory)`` for a new or a resumed run.

    Args:
        config: ``--config``; must be absent when resuming (the run's ``config.yaml`` is read).
        out: ``--out``; optional when resuming, and then it must be the resumed directory.
        resume: ``--resume RUN_DIR`` or None.
        example: a config path shown when ``--config`` is missing.

    Returns:
        The config file to load and the run directory to write.

    Raises:
        ConfigError: a missing or contradictory flag, or a resume directory without a config.

    Examples:
        >>> resolve_run_dir("c.yaml", "runs/a", None)
        (PosixPath('c.yaml'), PosixPath('runs/a'))
    """
    if resume:
        run = Path(resume)
        if config:
            raise ConfigError(f"--resume uses {run / 'config.yaml'}; drop --config "
                              "(change keys such as trainer.max_steps with --set)")
        if out and Path(out).resolve() != run.resolve():
            raise ConfigError(f"--resume {resume} and --out {out} differ; a run is resumed in place, "
                              "so give one directory")
        if not run.is_dir():
            raise ConfigError(f"--resume {resume}: no such run directory")
        cfg = run / "config.yaml"
        if not cfg.is_file():
            raise ConfigError(f"--resume {resume}: no config.yaml there (not a run directory)")
        return cfg, run
    if not config:
        raise ConfigError(f"give --config FILE ({example})")
    if not out:
        raise ConfigError("give --out RUN_DIR")
    return Path(config), Path(out)
