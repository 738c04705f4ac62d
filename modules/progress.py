"""Progress of a long loop, for a person at a terminal and for a log: a tqdm line that redraws on a terminal,
plain lines on a schedule when the stream is not a TTY (CI logs, a redirected run), nothing for a loop that ends
before `delay_s`.

tqdm draws the terminal line. What tqdm does not do is the non-TTY half: with `disable=None` it prints nothing
into a log, and forced on it writes carriage-return redraws that a log shows as one ever-growing line, so that
half is written here, a plain line at most every `interval_s` and one at the end.

Two meters share the config below:
- `Progress`: items of an in-memory stage (the random walks, PPR, the evaluator's ranking), with `shared` /
  `advance` for a Beam DoFn that sees one shard at a time (one meter per label and process: on the DirectRunner
  that is the whole stage, a multi-process runner gets one per worker).
- `StepProgress`: the training steps of an epoch, with the running mean loss and pairs/s.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Optional, TextIO

from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm  # a notebook widget in Jupyter, else tqdm


@dataclasses.dataclass(frozen=True)
class ProgressConfig:
    """Loops that end within `delay_s` print nothing; longer ones draw a tqdm line on a terminal, or a plain line
    every `interval_s` into a log (a line per 30 s shows life in a CI log without flooding it)."""

    enabled: bool = True
    delay_s: float = 5.0
    interval_s: float = 30.0


PROGRESS = ProgressConfig()  # read at each meter's start: tests and callers may replace it
DEFAULT_INTERVAL_S = PROGRESS.interval_s  # StepProgress's plain-line period


class Progress:
    """A progress meter over `total` units; `update(n)` after each piece of work, `close()` at the end."""

    def __init__(self, desc: str, total: int, unit: str = "items", stream=None, clock=time.monotonic):
        cfg = PROGRESS
        self.desc, self.total, self.unit, self.n = desc, int(total), unit, 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock, self._delay, self._interval = clock, cfg.delay_s, cfg.interval_s
        self._start = self._last = clock()
        self._printed = False
        tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._bar = (
            auto_tqdm(total=self.total, desc=f"[pinsage] {desc}", unit=unit, file=self._stream, delay=self._delay)
            if tty and cfg.enabled
            else None
        )
        self._plain = not tty and cfg.enabled

    def describe(self, desc: str) -> None:
        """A new label for the lines (and the bar) from now on, e.g. the model an evaluator is ranking."""
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(f"[pinsage] {desc}")

    def update(self, n: int) -> None:
        self.n += int(n)
        if self._bar is not None:
            self._bar.update(int(n))
            return
        now = self._clock()
        due = now - self._start >= self._delay and (not self._printed or now - self._last >= self._interval)
        if self._plain and due and self.n < self.total:
            self._line(now)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._plain and self._printed:  # a loop that said nothing while running says nothing at the end
            self._line(self._clock(), done=True)
        self._plain, self._bar = False, None

    def _line(self, now: float, done: bool = False) -> None:
        dt = max(now - self._start, 1e-9)
        rate = self.n / dt
        pct = f"{100.0 * self.n / self.total:.0f} %" if self.total else "-"
        tail = f"done in {dt:.1f} s" if done else f"ETA {(self.total - self.n) / rate:.0f} s" if rate else "ETA ?"
        print(
            f"[pinsage] {self.desc}: {self.n}/{self.total} {self.unit} ({pct}, {rate:,.0f} {self.unit}/s, {tail})",
            file=self._stream,
            flush=True,
        )
        self._printed, self._last = True, now

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_SHARED: dict[tuple[str, int], Progress] = {}


def shared(desc: str, total: int, unit: str = "items") -> Progress:
    """The process's meter for `desc` over `total` (made on first use; a finished one starts over), for DoFns
    that see one shard at a time; `advance` closes it with the shard that completes it."""
    key = (desc, int(total))
    meter = _SHARED.get(key)
    if meter is None or meter.n >= meter.total:
        meter = _SHARED[key] = Progress(desc, total, unit)
    return meter


def advance(desc: str, total: int, n: int, unit: str = "items") -> None:
    """shared(desc, total).update(n), closing the meter once it reaches its total."""
    meter = shared(desc, total, unit)
    meter.update(n)
    if meter.n >= meter.total:
        meter.close()


class StepProgress:
    """Steps `initial`..`total` of one loop; `update(loss)` after each step. pairs/s and the ETA count only the
    steps this process ran (a resumed epoch's earlier steps took no time here). Off a terminal: step/total, the
    epoch's running mean loss, pairs/s and the ETA as one plain line every `interval_s` and one at the end."""

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
