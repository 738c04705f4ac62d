"""Progress of a long loop (the training steps of an epoch): a tqdm bar on a terminal, plain lines otherwise.

A bar that redraws one line is what a person at a terminal wants; in a CI log or a file a redrawn line is either
thousands of carriage-return fragments or nothing, so when the stream is not a TTY (tqdm's `disable=None` test)
the same figures go out as one plain line every `interval_s` seconds and one at the end: step/total, the epoch's
running mean loss, pairs/s and the ETA (tqdm's own interval formatting).
"""

import sys
import time
from typing import Optional, TextIO

from tqdm import tqdm

DEFAULT_INTERVAL_S = 30.0  # plain-line period when not a TTY: a few lines a minute in a CI log


class StepProgress:
    """Steps `initial`..`total` of one loop; `update(loss)` after each step. pairs/s and the ETA count only the
    steps this process ran (a resumed epoch's earlier steps took no time here)."""

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        pairs_per_step: int = 1,
        file: Optional[TextIO] = None,
        interval_s: float = DEFAULT_INTERVAL_S,
    ):
        self.file = file if file is not None else sys.stderr
        self.total, self.desc, self.pairs_per_step, self.interval_s = total, desc, pairs_per_step, interval_s
        self.n, self.start_n = initial, initial
        self.t0 = self.last_line = time.perf_counter()
        self.loss = float("nan")
        self.bar = tqdm(
            total=total, initial=initial, desc=desc, unit="step", file=self.file, disable=None, dynamic_ncols=True
        )

    @property
    def plain(self) -> bool:
        """True when the stream is not a terminal: plain periodic lines instead of the bar."""
        return self.bar.disable

    def rate(self) -> tuple[float, float]:
        """(pairs/s, ETA seconds) from the steps run in this process."""
        secs = time.perf_counter() - self.t0
        steps_per_s = (self.n - self.start_n) / secs if secs > 0 else 0.0
        eta = (self.total - self.n) / steps_per_s if steps_per_s > 0 else float("nan")
        return steps_per_s * self.pairs_per_step, eta

    def update(self, mean_loss: float) -> None:
        self.n += 1
        self.loss = mean_loss
        if not self.plain:
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", pairs_s=f"{self.rate()[0]:.0f}", refresh=False)
            self.bar.update(1)
        elif time.perf_counter() - self.last_line >= self.interval_s and self.n < self.total:
            self.line()

    def line(self, final: bool = False) -> str:
        pairs_s, eta = self.rate()
        fmt = tqdm.format_interval
        tail = f"in {fmt(time.perf_counter() - self.t0)}" if final else f"ETA {'?' if eta != eta else fmt(eta)}"
        text = f"{self.desc} step {self.n}/{self.total} loss {self.loss:.4f} pairs/s {pairs_s:.0f} {tail}"
        print(text, file=self.file, flush=True)
        self.last_line = time.perf_counter()
        return text

    def close(self) -> None:
        if self.plain:
            self.line(final=True)
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
