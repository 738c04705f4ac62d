"""The blessing: whether a trained model may be pushed, decided from its evaluation report (report.json).

Per served signature, the model's row is compared with the best of that signature's baselines (the highest test
value of the blessing metric among them, pipeline/configs.BlessingConfig): a signature is blessed when it is not
*behind* its best baseline, i.e. when no paired difference (model - baseline, per test context) is below zero by
more than z standard errors. A model within noise of the best baseline is blessed: refusing it would refuse a
model no worse than what it replaces. The paired differences come from the report's `verdict_details` (the
evaluator computes them on the same contexts for both rankings); a report without them is refused with a reason,
not judged on unpaired means.

The blessing is per tower. The version (`blessed`) is blessed when the item-to-item signatures (related_items,
similar_items) are not behind. `recommend` (the context tower, when the run trained one) is judged the same way
among the history rows, `context_tower` against the best history baseline of `history_metrics` (from
`history_verdict_details`), and blessed on its own (`recommend_blessed`): a tower that is behind does not refuse
the version, it is left out of it (`left_out`; the Pusher pushes the version without the tower's signatures).

Light on purpose (no TensorFlow or TFX): the CLI reads a report with it after a run.
"""

from __future__ import annotations

from pipeline.configs import BLESSING, BlessingConfig

SIGNATURES = ("related_items", "similar_items")  # the item-to-item signatures every pushed version serves
MODEL = "pinsage"  # related_items' row (u_q . z_i with a query head, else z_q . z_i)
SIMILAR_MODEL = "pinsage_similar"  # similar_items' row when the model has a query head (z_q . z_i)
# report rows that are the model itself, not a baseline (the last: the context tower asked with one item)
NOT_BASELINES = (MODEL, SIMILAR_MODEL, "context_tower_one_item")
RECOMMEND = "recommend"  # the context tower's signature, blessed when the run trained a tower
TOWER_MODEL = "context_tower"  # recommend's row among the history rows
RECOMMEND_BLESSED_KEY = "recommend_blessed"  # the ModelBlessing's custom property of the tower's blessing (1 / 0)
# where each kind of signature finds its rows and paired differences in report.json
_ITEM_BLOCKS = ("metrics", "verdict_details")
_HISTORY_BLOCKS = ("history_metrics", "history_verdict_details")


def model_row(report: dict, signature: str) -> str:
    """The report row a signature serves: similar_items is `pinsage` too when the model has no query head (then
    the two rankings are the same)."""
    if signature == "similar_items" and SIMILAR_MODEL in report.get("metrics", {}):
        return SIMILAR_MODEL
    return MODEL


def report_baselines(report: dict) -> list[str]:
    """The baseline rows of a report: every test row but the model's own ones."""
    return sorted(name for name in report.get("metrics", {}) if name not in NOT_BASELINES)


def verdict_of(diff: float, se: float, z: float) -> str:
    """The contract's paired verdict: ahead / behind only past z standard errors (and in that direction)."""
    if diff > z * se and diff > 0:
        return "ahead"
    if diff < -z * se and diff < 0:
        return "behind"
    return "within_noise"


def _judge(report: dict, signature: str, wanted, config: BlessingConfig) -> tuple[dict, str | None]:
    """(the signature's block, the reason it refuses the model or None)."""
    history = signature == RECOMMEND
    metrics_key, details_key = _HISTORY_BLOCKS if history else _ITEM_BLOCKS
    metric, metrics = config.metric, report.get(metrics_key) or {}
    model = TOWER_MODEL if history else model_row(report, signature)
    present = sorted(n for n in metrics if n != model) if history else report_baselines(report)
    compared = present if wanted is None else [b for b in wanted if b in present]
    block = {"model": model, "baselines": compared, "best_baseline": None, "verdict": None}
    if block["model"] not in metrics:
        return block, f"{signature}: no {block['model']} row in the report"
    if not compared:
        return block, f"{signature}: none of its baselines {list(wanted or [])} is in the report"
    best = max(compared, key=lambda b: (metrics[b].get(metric, float("-inf")), b))
    block["best_baseline"] = best
    detail = (report.get(details_key) or {}).get(best, {}).get(signature)
    if not detail:
        return block, f"{signature}: no paired verdict against {best} in the report (an older evaluator's report)"
    if detail.get("metric", metric) != metric:
        return block, f"{signature}: the report's verdicts are on {detail['metric']}, the blessing's metric is {metric}"
    diff, se = float(detail["diff"]), float(detail["se"])
    block.update(verdict=verdict_of(diff, se, config.z), diff=diff, se=se, num_contexts=detail.get("num_contexts"))
    if block["verdict"] != "behind":
        return block, None
    return block, f"{signature}: behind {best} on {metric} (diff {diff:+.4f}, SE {se:.4f})"


def decide(report: dict, config: BlessingConfig = BLESSING) -> dict:
    """report.json's `blessing` block: {"blessed", "recommend_blessed", "metric", "z", "signatures": {signature:
    {"model", "best_baseline", "verdict", "baselines", "diff", "se", "num_contexts"}}, "reasons": [why the version
    is not blessed], "left_out": {"recommend": why} when the context tower is not blessed}. `blessed` judges the
    item-to-item signatures only; `recommend_blessed` is None without a tower row. A report without paired
    verdicts (`verdict_details`) is not blessed, with that as the reason."""
    out = {
        "blessed": False,
        "recommend_blessed": None,
        "metric": config.metric,
        "z": float(config.z),
        "signatures": {},
        "reasons": [],
        "left_out": {},
    }
    if not report.get("verdict_details"):
        out["reasons"].append(
            "the report has no paired verdicts (verdict_details): it was written by an older evaluator; "
            "rerun the evaluation"
        )
        return out
    signatures = dict(config.baselines())
    if TOWER_MODEL in (report.get("history_metrics") or {}):  # the run trained a context tower: it is served too
        signatures[RECOMMEND] = None
    for signature, wanted in signatures.items():
        block, reason = _judge(report, signature, wanted, config)
        out["signatures"][signature] = block
        if signature == RECOMMEND:  # the tower is blessed on its own: refused, it is left out of the version
            out["recommend_blessed"] = reason is None
            if reason:
                out["left_out"][RECOMMEND] = reason
        elif reason:
            out["reasons"].append(reason)
    out["blessed"] = not out["reasons"]
    return out


VERDICT_WORDS = {"ahead": "ahead of", "within_noise": "within noise of", "behind": "behind"}


def summary_lines(report: dict) -> list[str]:
    """One line per served list: its verdict against every baseline in the report on the blessing metric (the best
    of the ones its blessing compares marked), from report.json's `blessing` and `verdicts`; [] for a report
    without a blessing."""
    blessing = report.get("blessing") or {}
    lines = []
    for signature, block in (blessing.get("signatures") or {}).items():
        verdicts = report.get("history_verdicts" if signature == RECOMMEND else "verdicts") or {}
        groups: dict[str, list[str]] = {}
        for b in sorted(verdicts):  # every baseline: a list not gated on one is still reported against it
            v = (verdicts.get(b) or {}).get(signature)
            if v is None:
                continue
            groups.setdefault(v, []).append(b + (" (best)" if b == block.get("best_baseline") else ""))
        said = "; ".join(f"{VERDICT_WORDS.get(v, v)} {', '.join(names)}" for v, names in groups.items())
        lines.append(f"{signature} ({block.get('model')}, test {blessing.get('metric')}): {said or 'no verdicts'}")
    return lines


def blessing_line(report: dict, pushed: dict | None) -> str | None:
    """The run's blessing in one line: blessed and pushed (its version, and what was left out of it and why), or
    NOT blessed and why, and whether anything was pushed; `pushed` is the Pusher's pushed.json (None when the run
    stopped before it)."""
    blessing = report.get("blessing")
    if blessing is None:
        return None
    left_out = blessing.get("left_out") or {}
    where = None
    if pushed is not None:
        where = f"pushed version {pushed['version']}" if pushed.get("pushed", True) else "nothing pushed"
    if blessing.get("blessed"):
        return (
            "blessed: " + (where or "nothing pushed (the run stopped before the Pusher)") + _left_out(left_out, pushed)
        )
    why = "; ".join(list(blessing.get("reasons") or ["no reason given"]) + list(left_out.values()))
    if where is None:
        return f"NOT blessed: {why} (the run stopped before the Pusher)"
    if pushed.get("pushed", True):
        return f"NOT blessed: {why}; {where} anyway (--push-unblessed)"
    return f"NOT blessed: {why}; nothing pushed (rerun with --push-unblessed to push anyway)"


def _left_out(left_out: dict, pushed: dict | None) -> str:
    """The tail of a blessed version's line: the signatures the blessing refused, and whether the push left them out
    (pushed.json's `left_out`) or pushed them anyway (--push-unblessed)."""
    if not left_out:
        return ""
    why = "; ".join(left_out.values())
    names = ", ".join(left_out)
    if pushed is None or not pushed.get("pushed", True):
        return f"; {names} NOT blessed ({why})"
    if set(left_out) <= set(pushed.get("left_out") or ()):
        return f" without {names} ({why})"
    return f" with {names} NOT blessed ({why}) anyway (--push-unblessed)"
