"""Which form of the context tower fits this graph: the validation probe behind ContextTowerConfig(form='auto').

Training-free history scorers (modules/history.py) are asked the protocol's own question on validation (history =
the context's train items in order, target = its validation item, the history masked), on the same seeded sample
of contexts. Order-aware: `transitions_last_item` (the next item follows from the most recent one) and
`itemknn_history` with recency decays below 1 (recent items count more); order-free: `itemknn_history` at decay
1 (every history item counts the same). "sequence" when the best order-aware scorer beats the order-free one by
more than Z paired standard errors of HR@10 (evaluation.paired_verdict), else "set": the form that assumes less
unless order demonstrably carries the next item. Test interactions are never read; the same seed gives the same
choice.

Why a probe rather than a default: whether a collection is a sequence (a person's watch history) or a set (a
board, a cart, or a log whose timestamps carry nothing) is a property of the data the project is run on, and the
scorers measure exactly that difference on held-out data of this graph (as pipeline/sampling/probe.py picks the
neighbourhood source). Why a paired margin: with several order-aware candidates the best of them beats an equal
order-free one by noise alone; Z standard errors keep that from picking "sequence" on order-free data.
"""

from __future__ import annotations

import time

from modules import evaluation as ev
from modules import history

SET_SCORER = "itemknn_history"  # at decay 1: order-free
ORDER_DECAYS = tuple(d for d in history.ITEMKNN_DECAYS if d < 1.0)  # itemknn's recency weights: order-aware
METRIC = f"hr@{ev.K}"
Z = 2.0  # the blessing's margin: a difference beyond 2 paired SEs is rarely noise


def _scorers(graph) -> dict:
    knn = history.ItemKNNHistoryScorer(graph, decay=1.0)
    out = {SET_SCORER: knn, "transitions_last_item": history.transitions_last_item(graph)}
    out.update((f"{SET_SCORER}@decay={d:g}", knn.with_decay(d)) for d in ORDER_DECAYS)
    return out


def probe_ranks(graph, max_contexts: int | None = None, seed: int = 0) -> dict:
    """{scorer: [M] validation ranks} of every probe scorer on the same sampled validation contexts."""
    q = history.build_history_queries(graph, "validation", max_contexts=max_contexts or None, seed=seed)
    return {name: history.history_ranks_and_lists(s, q, k=1)[0] for name, s in _scorers(graph).items()}


def choose_form(ranks: dict, z: float = Z) -> tuple[str, dict]:
    """('sequence' or 'set', the paired comparison of the best order-aware scorer with the order-free one)."""
    value = {name: float(ev.metric_values(r, METRIC).mean()) for name, r in ranks.items()}
    order = [n for n in ranks if n != SET_SCORER]
    best = max(order, key=lambda n: (value[n], -order.index(n)))
    verdict, diff, se = ev.paired_verdict(ranks[best], ranks[SET_SCORER], METRIC, z)
    form = "sequence" if verdict == "ahead" else "set"
    return form, {"best_order_aware": best, "verdict": verdict, "diff": diff, "se": se, "z": z}


def probe(graph, max_contexts: int | None = None, seed: int = 0, z: float = Z) -> dict:
    """The probe's record (the history json's `form_probe`): each scorer's validation HR@10 (± SE), the paired
    comparison, the form chosen, the rule and the probe's wall time."""
    t0 = time.perf_counter()
    ranks = probe_ranks(graph, max_contexts, seed)
    form, comparison = choose_form(ranks, z)
    scores = {}
    for name, r in ranks.items():
        v = ev.metric_values(r, METRIC)
        scores[name] = {METRIC: float(v.mean()), f"{METRIC}_se": ev.sample_se(v), "contexts": int(len(r))}
    return {
        "metric": METRIC,
        "scores": scores,
        "comparison": comparison,
        "form": form,
        "rule": f"sequence if the best order-aware scorer beats {SET_SCORER} (decay 1) on validation {METRIC} "
        f"by more than {z:g} paired SE, else set",
        "seconds": time.perf_counter() - t0,
    }
