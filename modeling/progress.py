"""What a person watching ``python -m modeling train`` reads: one progress line per log interval and a last line.

    step 120/1000 (12%)  loss 3.412  2.31 steps/s  elapsed 0:00:52  ETA 0:06:21
    wrote runs/tok (1000 steps in 0:07:13)

The rate and ETA count the steps of this process only (a resumed run does not credit the steps before it),
so the ETA is what is left of this command. Every metric, machine-readable, is in the run's ``metrics.jsonl``.
"""

from __future__ import annotations

import math
from pathlib import Path


def clock(seconds: float) -> str:
    """``H:MM:SS`` (hours grow past 24; a negative or unknown duration is ``?``)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def progress_line(step: int, total: int, loss: float, steps_done: int, elapsed_s: float) -> str:
    """The progress line at ``step`` of ``total``: ``steps_done`` steps of this process took ``elapsed_s``."""
    rate = steps_done / elapsed_s if elapsed_s > 0 else math.nan
    eta = (total - step) / rate if rate > 0 else math.nan
    percent = math.floor(100 * step / total) if total > 0 else 100
    return (f"step {step}/{total} ({percent}%)  loss {loss:.4g}  {rate:.2f} steps/s  elapsed {clock(elapsed_s)}  "
            f"ETA {clock(eta)}")


def finished_line(run_dir: str | Path, steps_done: int, elapsed_s: float, step: int, max_steps: int) -> str:
    """The last line of a training command; says how to go on when the run stopped before ``max_steps``."""
    line = f"wrote {run_dir} ({steps_done} step{'' if steps_done == 1 else 's'} in {clock(elapsed_s)})"
    if step < max_steps:
        line += f"; the run is at step {step} of {max_steps}: run it again (without --until-step) to continue"
    return line


def interrupted_line(step: int, saved_step: int | None) -> str:
    """What Ctrl-C during training prints: where the run will resume from."""
    if saved_step is None:
        return f"interrupted at step {step} before any checkpoint; rerun the same command to start again"
    if saved_step == step:
        return f"interrupted at step {step}; rerun the same command to resume"
    return (f"interrupted at step {step}; rerun the same command to resume from step {saved_step} "
            "(the last checkpoint)")
