"""``python -m pipeline.launch``: Hydra reads ``conf/`` and the overrides; one config is launched, or each
point of a multirun submitted (``pipeline.launch.sweep``). Exit codes: 0 done, 1 some video failed,
2 configuration error (before any job), 130 Ctrl-C."""

from __future__ import annotations

import shlex
import sys
import typing as tp

from pipeline.common.progress import set_interval
from pipeline.common.quiet import silence_libraries
from pipeline.config import CONF_DIR, ConfigError, build_run_config
from pipeline.config.compose import check_overrides
from pipeline.launch.launcher import Interrupted, launch_config
from pipeline.launch.sweep import submit_point


def main(calibrate: bool = False) -> None:
    """``calibrate``: ``python -m pipeline.calibrate``, which measures each config's rate
    (``pipeline.launch.calibration``) instead of launching it."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    conf_dir = CONF_DIR
    try:
        check_overrides(sys.argv[1:], conf_dir)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    started = False
    program = "pipeline.calibrate" if calibrate else "pipeline.launch"
    command = shlex.join([sys.executable, "-m", program, *sys.argv[1:]])

    @hydra.main(config_path=str(conf_dir), config_name="config", version_base=None)
    def _run(cfg: DictConfig) -> None:
        nonlocal started
        started = True
        flat = tp.cast(dict[str, tp.Any], OmegaConf.to_container(cfg, resolve=True))
        hydra_cfg = HydraConfig.get()
        silence_libraries(bool(flat.get("verbose", False)))
        try:
            run = build_run_config(flat)
            set_interval(run.progress_s)  # for the hashing and probing steps (the jobs are given run.progress_s)
            if calibrate:
                from pipeline.launch.calibration import calibrate as measure

                measure(run)
                return
            if hydra_cfg.mode == RunMode.MULTIRUN:
                submit_point(run, list(hydra_cfg.overrides.task), command)
                return
            summary = launch_config(run, command=command)
        except Interrupted as e:
            print(str(e), file=sys.stderr)
            sys.exit(130)
        except KeyboardInterrupt:
            print("interrupted before any job was submitted", file=sys.stderr)
            sys.exit(130)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if not summary.ok:
            sys.exit(1)

    try:
        _run()
    except SystemExit as e:
        # Hydra reports an error of its own (the config cannot be composed) with exit code 1: a
        # configuration error, before any job, which the launcher's contract says is 2
        if e.code == 1 and not started:
            sys.exit(2)
        raise
