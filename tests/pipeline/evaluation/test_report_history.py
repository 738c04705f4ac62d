"""The report's "Recommendations from a history" section and its `recommend` summary line, from a hand-made
report.json with the history blocks of the contract (history_metrics, history_validation_metrics,
history_verdicts, history_verdict_details, history_evaluation)."""

import re

from pipeline.evaluation import report as report_lib
from tests.pipeline.evaluation.test_report import v2_report

COLS = ("hr@10", "ndcg@10", "mrr", "hr@100", "coverage@10", "popular_share@10")


def _hrow(hr):
    return {**{c: hr * f for c, f in zip(COLS, (1, 0.5, 0.4, 3, 0.6, 0.2))}, **{c + "_se": 0.01 for c in COLS}}


def with_history(verdict="ahead") -> dict:
    rows = {"context_tower": 0.21, "ease": 0.18, "transitions_last_item": 0.15, "popularity": 0.05}
    test = {n: _hrow(v) for n, v in rows.items()}
    base = [n for n in rows if n != "context_tower"]
    verdicts = {b: {"recommend": "ahead"} for b in base}
    verdicts["ease"] = {"recommend": verdict}
    details = {b: {"recommend": {"metric": "hr@10", "diff": 0.21 - rows[b], "se": 0.012}} for b in base}
    info = {
        "in_blessing": True,
        "chosen": {"ease": {"param": "lambda", "value": 50.0, "validation": {"lambda=10": 0.1, "lambda=50": 0.12}}},
        "skipped": {"rwr_history": "a reason"},
        "tower": {
            "form": "sequence",
            "form_probe": {"rule": "the rule"},
            "max_len": 50,
            "best_epoch": 7,
            "epoch": list(range(1, 11)),
            "best_val_hr@10": 0.23,
            "train_seconds": 31.0,
        },
    }
    return dict(
        v2_report(),
        history_metrics=test,
        history_validation_metrics={n: {"hr@10": v + 0.02, "hr@10_se": 0.011} for n, v in rows.items()},
        history_verdicts=verdicts,
        history_verdict_details=details,
        history_evaluation=info,
    )


def test_the_history_table_has_every_row_with_its_se_and_the_towers_verdict():
    header, body = report_lib.history_rows(with_history())
    assert header[0] == "model" and header[1] == "HR@10" and "coverage@10" in header and header[-1].endswith("vs it")
    assert [r[0] for r in body] == ["context_tower", "ease", "transitions_last_item", "popularity"]  # by HR@10
    tower, ease = body[0], body[1]
    assert tower[1] == "0.210 ±0.010" and tower[-1] == "–" and tower[-2] == "0.230 ±0.011"
    assert ease[-1] == "ahead (+0.030 ±0.012)" and all("±" in c for c in ease[1:-1])


def test_the_summary_line_compares_the_tower_with_the_best_history_baseline():
    for verdict, words in (("ahead", "ahead of"), ("within_noise", "within noise of"), ("behind", "behind")):
        line = report_lib.history_summary_line(with_history(verdict))
        assert line.startswith("recommend (`context_tower`): HR@10 0.210 ± 0.010")
        assert f"{words} the best history baseline, ease (0.180 ± 0.010)" in line
        assert "paired difference +0.030 ± 0.012" in line


def test_markdown_and_html_carry_the_section_and_the_summary_line(tmp_path):
    rep = with_history()
    md = report_lib.markdown(rep)
    section = md.split("## Recommendations from a history", 1)[1].split("\n## ", 1)[0]
    assert "| context_tower | 0.210 ±0.010 |" in section and "ahead (+0.030 ±0.012)" in section
    assert "rwr_history not run: a reason." in section
    assert "ease: lambda = 50, chosen on validation HR@10" in section and "form sequence" in section
    summary = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"- recommend \(`context_tower`\): HR@10 0.210", summary)
    page = report_lib.render_html(rep, str(tmp_path))
    assert '<section id="history">' in page and 'class="sig history"' in page
    assert "0.210 ±0.010" in page.split('<section id="history">', 1)[1]


def test_a_report_without_history_queries_has_no_section():
    rep = v2_report()
    assert report_lib.history_rows(rep) is None and report_lib.history_summary_line(rep) is None
    assert "Recommendations from a history" not in report_lib.markdown(rep)
    assert 'id="history"' not in report_lib.render_html(rep, ".")
