"""modules/progress: Progress (a stage's items) and StepProgress (training steps), each a redrawn tqdm line on a
terminal, plain periodic lines elsewhere, nothing for a short loop."""

import dataclasses
import io
import re

import pytest

from modules import progress
from modules.progress import StepProgress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def run(file, interval_s, losses=(4.0, 3.0, 2.0), initial=1, total=4):
    with StepProgress(
        total, "[pinsage] train epoch 1/1", initial=initial, pairs_per_step=8, file=file, interval_s=interval_s
    ) as bar:
        for loss in losses:
            bar.update(loss)
    return file.getvalue()


def test_a_terminal_gets_one_redrawn_tqdm_line_with_loss_and_pairs_per_second():
    out = run(FakeTerminal(), interval_s=0)
    assert "\r" in out and out.count("\n") <= 1  # one line, redrawn
    last = out.rstrip("\n").split("\r")[-1]
    assert re.search(r"4/4 \[.*step/s, loss=2\.0000, pairs_s=\d+\]$", last), last
    assert not re.search(r"step \d/4 loss", out)  # no plain lines on a terminal


def test_a_non_terminal_gets_plain_lines_at_the_period_and_one_at_the_end():
    every = run(io.StringIO(), interval_s=0).splitlines()
    # steps 2 and 3 (resumed at 1) at a 0 s period, not the last step (the final line covers it), then the end
    assert [
        re.match(r"\[pinsage\] train epoch 1/1 step (\d)/4 loss (\S+) pairs/s \d+ (ETA|in) ", ln).groups()
        for ln in every
    ] == [("2", "4.0000", "ETA"), ("3", "3.0000", "ETA"), ("4", "2.0000", "in")]
    rare = run(io.StringIO(), interval_s=3600).splitlines()
    assert len(rare) == 1 and " step 4/4 loss 2.0000 " in rare[0]  # a long period: only the final line


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def fast(monkeypatch):
    """No delay, a line at every update: what a long stage shows, in a test's time."""
    monkeypatch.setattr(progress, "PROGRESS", dataclasses.replace(progress.PROGRESS, delay_s=0.0, interval_s=0.0))


def test_plain_lines_follow_the_delay_and_interval_when_not_a_tty(monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS", progress.ProgressConfig(enabled=True, delay_s=5.0, interval_s=30.0))
    out, clock = io.StringIO(), Clock()
    meter = progress.Progress("random walks", 100, "items", stream=out, clock=clock)
    for t, n in ((1, 10), (6, 10), (20, 10), (40, 20), (50, 10)):
        clock.t = t
        meter.update(n)
    clock.t = 60
    meter.close()
    lines = out.getvalue().splitlines()
    # t=1: inside the delay; t=6: first line; t=20: within 30 s of it; t=40: the next; t=50: too soon; the end
    assert lines == [
        "[pinsage] random walks: 20/100 items (20 %, 3 items/s, ETA 24 s)",
        "[pinsage] random walks: 50/100 items (50 %, 1 items/s, ETA 40 s)",
        "[pinsage] random walks: 60/100 items (60 %, 1 items/s, done in 60.0 s)",
    ]
    assert "\r" not in out.getvalue()


def test_a_short_loop_prints_nothing():
    out, clock = io.StringIO(), Clock()
    with progress.Progress("walks", 10, stream=out, clock=clock) as meter:
        clock.t = 1.0
        meter.update(10)
    assert out.getvalue() == ""


def test_a_terminal_gets_one_updating_tqdm_line(fast):
    out = FakeTerminal()
    with progress.Progress("random walks", 4, "items", stream=out) as meter:
        for _ in range(4):
            meter.update(1)
    text = out.getvalue()
    assert "[pinsage] random walks" in text and "4/4" in text and "\r" in text
    assert "\n[pinsage] random walks: " not in text  # no plain lines on a terminal


def test_disabled_prints_nothing(monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS", dataclasses.replace(progress.PROGRESS, enabled=False, delay_s=0.0))
    out = io.StringIO()
    with progress.Progress("walks", 2, stream=out, clock=Clock()) as meter:
        meter.update(1)
        meter.update(1)
    assert out.getvalue() == ""


def test_shared_meter_spans_shards_and_closes_at_its_total(fast, capsys):
    for n in (30, 30, 40):
        progress.advance("PPR hard negatives", 100, n, "queries")
    lines = capsys.readouterr().err.splitlines()
    assert [re.search(r": (\d+)/100", ln).group(1) for ln in lines] == ["30", "60", "100"]
    assert "done in" in lines[-1]
    progress.advance("PPR hard negatives", 100, 50, "queries")  # a second stage run: a fresh meter
    assert ": 50/100 queries" in capsys.readouterr().err


def test_both_meters_share_one_config():
    assert progress.DEFAULT_INTERVAL_S == progress.PROGRESS.interval_s == progress.ProgressConfig().interval_s
