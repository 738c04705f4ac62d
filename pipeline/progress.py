"""Progress inside a long in-memory stage (the random walks, PPR): one line that updates on a terminal, plain
lines every few seconds when stderr is not a terminal (CI logs, a redirected run), nothing for a loop that ends
before `delay_s`.

tqdm draws the terminal line (`disable=None`: only on a TTY). What tqdm does not do is the non-TTY half — with
`disable=None` it prints nothing at all into a log, and forced on it writes carriage-return redraws that a log
shows as one ever-growing line — so that half is a few lines here: a plain `[pinsage] <what>: n/total unit (pct,
rate, ETA)` line at most every `interval_s`, and one at the end.

A Beam DoFn that processes many shards in one worker process reports into one meter per label (`shared`): on the
DirectRunner that is the whole stage; a multi-process runner gets one meter per worker (each counts its shards).
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

from pipeline import configs


class Progress:
    """A progress meter over `total` units; `update(n)` after each piece of work, `close()` at the end."""

    def __init__(self, desc: str, total: int, unit: str = "items", stream=None, clock=time.monotonic):
        cfg = configs.PROGRESS
        self.desc, self.total, self.unit, self.n = desc, int(total), unit, 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock, self._delay, self._interval = clock, cfg.delay_s, cfg.interval_s
        self._start = self._last = clock()
        self._printed = False
        tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._bar = (
            tqdm(total=self.total, desc=f"[pinsage] {desc}", unit=unit, file=self._stream, delay=self._delay)
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
    that see one shard at a time. Call `finish_shared` after the shard that completes it — or let `advance` do
    it."""
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
