"""modules/progress.StepProgress: a redrawn tqdm line on a terminal, plain periodic lines elsewhere."""

import io
import re

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
