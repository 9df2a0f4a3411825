"""Progress of a training run: a tqdm bar on a terminal, log lines elsewhere."""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional

log = logging.getLogger("mp_jax.runtime.progress")


def _fmt(row: dict) -> dict:
    keys = [k for k in ("train_loss", "val_loss", "val_accuracy") if k in row]
    return {k.replace("_loss", ""): f"{row[k]:.4f}" for k in keys}


class EpochProgress:
    """Per-epoch progress with epoch, losses, elapsed and remaining time.

    ``enabled=None`` shows a bar only when stderr is a terminal; otherwise every epoch
    is logged at INFO level on the ``mp_jax.runtime.progress`` logger (silent unless logging is
    configured, as the experiment entry points do). ``unit`` names what is counted
    ("iteration" for L-BFGS, whose updates may each advance several).
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "train", enabled: Optional[bool] = None,
                 unit: str = "epoch"):
        self.desc = desc
        self.total = total
        self.start = time.perf_counter()
        self.initial = self.done = initial
        self.unit = unit
        use_bar = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if use_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, epoch: int, row: dict) -> None:
        """``epoch`` units done so far; ``row`` the latest losses."""
        last, self.done = self.done, epoch
        if self.bar is not None:
            self.bar.set_postfix(_fmt(row), refresh=False)
            self.bar.update(epoch - last)
            return
        done = epoch - self.initial
        every = max(1, self.total // 10)  # a line at the first update, the last and each tenth passed
        if epoch // every == last // every and epoch != self.total and last != self.initial:
            return
        elapsed = time.perf_counter() - self.start
        remaining = elapsed / max(done, 1) * (self.total - epoch)
        parts = " ".join(f"{k}={v}" for k, v in _fmt(row).items())
        log.info("%s %s %d/%d %s elapsed %.1fs remaining ~%.1fs", self.desc, self.unit, epoch, self.total, parts, elapsed,
                 remaining)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
