"""`pinsage` command line: data, run, embed, serve, query, bench.

The subcommands import what they need inside their functions on purpose: `pinsage --help`, `pinsage query` and
`pinsage data` then start in a second instead of loading TensorFlow and TFX (several seconds) first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from pipeline.configs import DATASETS, EMBED, EMBED_STRATEGIES, HOLD_OUT_BY, SYNTHETIC_DEFAULTS
from pipeline.run_options import SHUFFLE_HELP, add_run_arguments, add_source_arguments, fraction, int_at_least
from schema import versions
from serving.flags import DEFAULTS as SERVING
from serving.flags import add_serve_arguments


def _cmd_data(args) -> int:
    from pipeline.data import datasets

    # materialise refuses the synthetic-only flags on another dataset (ValueError: exit 2 below)
    kw = {"shuffle_seed": args.shuffle_order, "communities": args.communities, "locality": args.locality}
    if args.dataset == "synthetic":
        kw.update(items=args.items, contexts=args.contexts, edges=args.edges, seed=args.seed)
    try:
        summary = datasets.materialise(args.dataset, args.out, cache_dir=args.cache_dir, **kw)
    except (ValueError, OSError, datasets.DatasetUnavailable) as e:  # edges < contexts, --out is a file, offline
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _print_graph_summary(graph: dict) -> None:
    if graph:
        c = graph["counts"]
        print(
            f"[pinsage] graph: {graph['num_items']} items, {graph['num_contexts']} contexts, "
            f"{graph['num_interactions']} interactions (train {c.get('interactions.train', 0)}, "
            f"validation {c.get('interactions.validation', 0)}, test {c.get('interactions.test', 0)})"
        )


def _executed_timings(output: str, timings) -> dict:
    """Each stage's wall time from when it last ran (a cache hit's own time is next to nothing), for the report."""
    executed = {}
    try:
        with open(os.path.join(output, "timings.json")) as f:
            executed = dict(json.load(f).get("executed", {}))
    except (OSError, ValueError):
        pass
    executed.update({k: v for k, v in timings.items() if k not in timings.cached})
    return executed


def _log(line: str) -> None:
    print(line, flush=True)


def _publish(args, output: str, data_report: dict, timings: dict, cold_start: dict | None = None) -> str | None:
    """report.html/md/json in OUT (with example queries after a full run); prints the quality table."""
    from pipeline import driver

    report_dir = driver.last_run_output_dir(output, "PinSageEvaluator", "report")
    if not report_dir or args.stop_after not in (None, "evaluation"):
        return None
    print("[pinsage] report: example queries from the run's index ...", flush=True)
    examples = driver.example_queries(output) if args.stop_after is None else None
    html = driver.publish_report(
        report_dir, output, data_report=data_report, examples=examples or [], timings=timings, cold_start=cold_start
    )
    md = open(os.path.join(output, "report.md"), encoding="utf-8").read()
    quality = md[md.index("## Quality vs baselines") :].split("\n## ")[0]
    print(quality.split("![")[0].rstrip())
    if "## Recommendations from a history" in md:  # the context tower's table (absent with --no-context-tower)
        section = md.split("\n## Recommendations from a history", 1)[1].split("\n## ")[0]
        print("\n## Recommendations from a history" + section.rstrip())
    print("\n".join(ln for ln in md.splitlines() if ln.startswith("Kurtosis of pairwise")))
    if "\n## Item cold start" in md:
        print("\n## Item cold start" + md.split("\n## Item cold start", 1)[1].split("\n## ")[0].rstrip())
    return html


def _print_blessing(args, output: str) -> None:
    """Each served list's verdict against its baselines and the blessing line (blessed and pushed, or why not and
    that nothing was pushed), from the run's report.json and the Pusher's pushed.json."""
    from pipeline import driver
    from pipeline.evaluation import blessing

    report_dir = driver.last_run_output_dir(output, "PinSageEvaluator", "report")
    if not report_dir or args.stop_after not in (None, "evaluation"):
        return
    with open(os.path.join(report_dir, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    pushed = driver.pushed_model(output) if args.stop_after is None else None
    for line in blessing.summary_lines(report) + [blessing.blessing_line(report, pushed) or ""]:
        if line:
            print(f"[pinsage] {line}")


LAST_STAGE = {
    "graph": "GraphGen",
    "transform": "Transform",
    "sampling": "NeighborhoodSampler/PairGen",
    "evaluation": "PinSageEvaluator",
}


def _cmd_run(args) -> int:
    t0 = time.time()  # before the TensorFlow/TFX imports: the total is the wall time the user waits
    from pipeline import driver, run_options
    from pipeline.data import datasets, ingest

    output = os.path.abspath(args.output)
    try:
        config = run_options.run_config(args)
        os.makedirs(output, exist_ok=True)
        t_build = time.time()
        pipeline, ingest_report = driver.build(output, config)
    except (ValueError, ingest.InputError, datasets.DatasetUnavailable) as e:  # InputError names the file
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. --output names a file, or a directory that cannot be written
        print(f"[pinsage] ERROR: {e.filename or output}: {e.strerror or e}", file=sys.stderr)
        return 2
    ingest_s = round(time.time() - t_build, 1)
    items, inter = ingest_report["items"]["rows_kept"], ingest_report["interactions"]["rows_kept"]
    print(f"[pinsage] ingest done in {ingest_s:.1f} s: {items} items, {inter} interactions kept", flush=True)
    name, n = pipeline.pipeline_info.pipeline_name, len(pipeline.components)
    print(f"[pinsage] pipeline '{name}' with {n} stages, output {output}", flush=True)
    try:
        timings = driver.run_local(pipeline)
    except driver.StageError as e:
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 1
    pipeline_s = round(time.time() - t_build, 1)
    report = driver.write_data_report(output, ingest_report)
    lines = driver.summarize_data_report(report)
    print(f"[pinsage] data report: {os.path.join(output, 'data_report.json')}")
    print("\n".join(lines) if lines else "  no bad input found")
    _print_graph_summary(report["graph"])
    executed = _executed_timings(output, timings)
    stage_s = {"ingest": ingest_s, **timings}
    cold = None
    if args.cold_start_share and args.stop_after is None:
        from pipeline.refresh import cold_start_run

        t_cold = time.time()
        try:
            cold = cold_start_run.run(
                output, config, args.cold_start_share, args.cold_start_by, args.cold_start_seed, log=_log
            )
        except (ValueError, ingest.InputError, driver.StageError) as e:  # the run's own report is still published
            print(f"[pinsage] ERROR: cold-start evaluation: {e}", file=sys.stderr)
            cold = {"error": str(e)}
        stage_s["cold_start_evaluation"] = round(time.time() - t_cold, 1)
    report_html = _publish(
        args,
        output,
        report,
        {"stages": stage_s, "cached": timings.cached, "executed": executed, "pipeline_s": pipeline_s},
        cold,
    )
    _print_blessing(args, output)
    if args.serve_and_query and args.stop_after is None:
        serve_and_query(output)
    total = {"ingest_s": ingest_s, "pipeline_s": pipeline_s, "total_s": round(time.time() - t0, 1)}
    with open(os.path.join(output, "timings.json"), "w") as f:
        json.dump({"stages": timings, "cached": timings.cached, "executed": executed, **total}, f, indent=2)
    if report_html:
        print(f"[pinsage] report: {report_html} (and report.md, report.json, plots/)")
    print(
        f"[pinsage] done in {time.time() - t0:.1f} s (pipeline {pipeline_s:.1f} s, "
        f"{len(timings.cached)} of {len(timings)} stages from the TFX cache); "
        f"the pipeline ended after {LAST_STAGE.get(args.stop_after, 'PinSagePusher')}."
    )
    return 1 if cold is not None and "error" in cold else 0


def _cmd_embed(args) -> int:
    """`pinsage embed`: a pushed version's model over a new catalogue -> a new version (pipeline/refresh/embed.py)."""
    from pipeline.data import ingest
    from pipeline.refresh import embed

    beam_args = tuple(args.beam_arg or ())
    opts = embed.RefreshOptions(args.model, args.data_dir, os.path.abspath(args.output), args.push_to, beam_args)
    opts = dataclasses.replace(opts, embed_strategy=args.embed_strategy, retrained=args.retrained)
    try:
        embed.check_retrained(args.retrained)  # a bad --retrained path fails before any stage runs
        prepared = embed.prepare(opts)
    except (ValueError, ingest.InputError) as e:  # NotAModel names the version, InputError the file
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. --output names a file
        print(f"[pinsage] ERROR: {e.filename or args.output}: {e.strerror or e}", file=sys.stderr)
        return 2
    report = embed.refresh(opts, prepared)
    print(f"[pinsage] embedded {report['items']} items ({report['new_items']} new) with {report['source_version']}")
    print(f"[pinsage] pushed version {report['version']}: {report['destination']}")
    from pipeline.evaluation import cold_start

    print("\n".join(cold_start.markdown_lines(report.get("cold_start") or {})))
    print(f"[pinsage] report: {os.path.join(opts.output, embed.REPORT_MD)} (and {embed.REPORT_FILE})")
    return 0


def _add_embed_parser(sub) -> None:
    e = sub.add_parser(
        "embed", help="refresh a catalogue's embeddings with a pushed version's model, into a new version"
    )
    e.add_argument(
        "--model", required=True, metavar="VERSION_DIR", help="a pushed version, e.g. serving_model/pinsage/3"
    )
    e.add_argument("--data-dir", required=True, help="the catalogue in the CSV contract (as `pinsage run`)")
    e.add_argument("--output", required=True, help="its artifacts and refresh_report.json")
    e.add_argument(
        "--push-to",
        default=None,
        metavar="MODEL_BASE_PATH",
        help="where the new version goes (default: the directory holding VERSION_DIR), one above the newest there",
    )
    e.add_argument("--beam-arg", action="append", help="a Beam pipeline option, repeatable (as `pinsage run`)")
    e.add_argument("--embed-strategy", choices=EMBED_STRATEGIES, default=EMBED.strategy, help="as `pinsage run`")
    e.add_argument(
        "--retrained",
        default=None,
        metavar="VERSION_DIR",
        help="the cold-start evaluation's reference: a version of the same model trained with the new items",
    )
    e.set_defaults(fn=_cmd_embed)


def _cmd_serve(args) -> int:
    from serving.server import serve_from_args

    return serve_from_args(args, "pinsage serve")


# what each item-to-item signature's list is, above it (schema/versions.py)
SIGNATURE_HEADINGS = {versions.RELATED_ITEMS: "related to", versions.SIMILAR_ITEMS: "similar to (z . z)"}


def _print_related(
    result: dict, queries: list[str], query_titles: list[str] | None = None, heading: str = "related to"
) -> None:
    for i, q in enumerate(queries):
        label = f"{q}  {query_titles[i]}" if query_titles and query_titles[i] else q
        print(f"\n{heading} {label}:")
        titles = result.get("titles", [[""] * len(result["item_ids"][i])] * len(queries))
        for rank, (item, score, title) in enumerate(zip(result["item_ids"][i], result["scores"][i], titles[i]), 1):
            ident = f"id {item}, " if title and title != item else ""
            print(f"  {rank:>2}. {title or item}  ({ident}score {score:.3f})")


def _query_items(args) -> tuple[list[str], list[str]] | None:
    """The query's item ids and labels: --item ids as given, then each --title's item through the server's
    catalogue search (REST), labelled with its title; None (printed why) when a title names no one item."""
    from serving.client import RestError, resolve_title

    ids, labels = list(args.item or []), [""] * len(args.item or [])
    rest = f"{args.host}:{args.rest_api_port}"
    for title in args.title or []:
        try:
            item_id, found = resolve_title(rest, title, model_name=args.model_name)
        except (LookupError, RestError) as e:
            print(f"[pinsage] {e}", file=sys.stderr)
            return None
        ids.append(item_id)
        labels.append(found)
    return ids, labels


def _cmd_query(args) -> int:
    import grpc  # with serving.client: no TensorFlow on this path (a query starts in a fraction of a second)

    from serving.client import recommend, recommend_context, related

    if sum(map(bool, (args.item or args.title, args.history, args.context))) != 1:
        print("[pinsage] give --item / --title (repeatable), --history ID,ID,... or --context ID", file=sys.stderr)
        return 2
    host = f"{args.host}:{args.port}"
    items = _query_items(args) if args.item or args.title else None
    if (args.item or args.title) and items is None:
        return 2
    try:
        if args.context:
            result = recommend_context(host, [args.context], args.k, model_name=args.model_name)
        elif args.history:
            history = [x.strip() for x in args.history.split(",") if x.strip()]
            result = recommend(host, [history], args.k, model_name=args.model_name)
        else:
            result = related(host, items[0], args.k, model_name=args.model_name, signature_name=args.signature)
    except grpc.RpcError as e:
        print(f"[pinsage] {e.code().name}: {e.details()}", file=sys.stderr)
        return 2
    if args.context:
        used = result["history_used"][0]
        _print_related(result, [args.context], [f"({used} items in its history)"], heading="recommended for context")
    elif args.history:
        used = result["history_used"][0]
        _print_related(result, [args.history], [f"({used} of its items known)"], heading="recommended for history")
    else:
        heading = SIGNATURE_HEADINGS.get(args.signature, f"{args.signature} of")
        _print_related(result, items[0], items[1], heading=heading)
    return 0


def serve_and_query(output: str, k: int = 10, port: int = 0) -> dict:
    """Starts the server on the run's pushed model, asks for the related items of three items spread over
    popularity (modules.evaluation.demo_query_items: the most engaged, a middle and a tail item) through the TF
    Serving gRPC API, prints each query's title above its list, and the head item's similar_items list (z . z)
    when the version has that signature; stops the server. Returns the related_items response, with the
    similar_items one under "similar_items". When the run pushed nothing (its model was not blessed) it serves
    nothing either (an older version there is not this run's model): it says so and returns {}."""
    from modules.evaluation import demo_query_items
    from pipeline import driver
    from schema import graph as graph_io
    from serving.client import related
    from serving.config import ServingConfig
    from serving.server import serve

    pushed = driver.pushed_model(output)
    if pushed is not None and not pushed.get("pushed", True):
        print(
            "[pinsage] nothing served: the model was NOT blessed, so the run pushed nothing "
            "(rerun with --push-unblessed to serve it anyway)"
        )
        return {}

    g = graph_io.load_graph(driver.latest_artifact_dir(output, "GraphGen", "graph"))
    nodes = demo_query_items(g.train_degree)
    queries = [str(g.item_ids[n]) for n in nodes]
    strata = ["head", "middle", "tail"][: len(nodes)]
    model_dir = os.path.join(output, "serving_model", "pinsage")
    server = serve(ServingConfig(model_dir, port=port, poll_seconds=60, rest_api_port=None), block=False)
    try:
        print(
            f"[pinsage] serving {os.path.join(output, 'serving_model', 'pinsage')} on port {server.port} "
            f"(version {server.core.current.version}); querying a head, a middle and a tail item by train interactions"
        )
        result = related(f"localhost:{server.port}", queries, k)
        titles = _titles_of(output, queries)
        labels = [
            (f"{t}  " if t and t != q else "") + f"[{s}: {int(g.train_degree[n])} train interactions]"
            for t, q, s, n in zip(titles, queries, strata, nodes)
        ]
        _print_related(result, queries, labels)
        if versions.SIMILAR_ITEMS in server.core.current.signature_defs:  # the head item's "more like this" too
            similar = related(f"localhost:{server.port}", queries[:1], k, signature_name=versions.SIMILAR_ITEMS)
            _print_related(similar, queries[:1], labels[:1], heading=SIGNATURE_HEADINGS[versions.SIMILAR_ITEMS])
            result = dict(result, similar_items=similar)
        if versions.RECOMMEND in server.core.current.signature_defs:  # a person's recent history, one step on
            result = dict(result, recommend=_recommend_demo(output, g, server.port, k))
        if versions.RECOMMEND_CONTEXT in server.core.current.signature_defs:  # the same context by its stored u_c
            result = dict(result, recommend_context=_context_demo(g, server.port, k))
    finally:
        server.stop()
        print("[pinsage] server stopped")
    return result


def _recommend_demo(output: str, g, port: int, k: int, length: int = 5) -> dict:
    """recommend for the most active context's last `length` train items, printed under their titles."""
    import numpy as np

    from serving.client import recommend

    train = g.split == "train"
    busiest = np.bincount(g.context_index[train], minlength=g.num_contexts).argmax()
    rows = np.flatnonzero(train & (g.context_index == busiest))
    history = [str(g.item_ids[n]) for n in g.node_id[rows[np.argsort(g.position[rows])]][-length:]]
    result = recommend(f"localhost:{port}", [history], k)
    label = "; ".join(t or i for t, i in zip(_titles_of(output, history), history))
    _print_related(
        result, [str(g.context_ids[busiest])], [f"[last {len(history)}: {label}]"], "recommended for context"
    )
    return result


def _context_demo(g, port: int, k: int) -> dict:
    """recommend_context for the most active context: its precomputed vector, its whole history excluded."""
    import numpy as np

    from serving.client import recommend_context

    busiest = str(g.context_ids[np.bincount(g.context_index[g.split == "train"], minlength=g.num_contexts).argmax()])
    result = recommend_context(f"localhost:{port}", [busiest], k)
    label = f"[stored vector; {result['history_used'][0]} items in its history excluded]"
    _print_related(result, [busiest], [label], "recommended for context")
    return result


def _titles_of(output: str, ids: list[str]) -> list[str]:
    from pipeline import driver
    from schema import embeddings as embeddings_io

    emb_dir = driver.latest_artifact_dir(output, "BulkEmbedder", "embeddings")
    try:
        _, all_ids, titles = embeddings_io.read_embeddings(emb_dir)
    except (OSError, TypeError):
        return [""] * len(ids)
    pos = {x: i for i, x in enumerate(all_ids)}
    return [titles[pos[x]] if titles and x in pos else "" for x in ids]


def _bench_names() -> list[str]:
    """The benchmarks the installed `bench` package holds (its modules, helpers starting with "_" left out)."""
    import importlib.util
    import pkgutil

    spec = importlib.util.find_spec("bench")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations) if not m.name.startswith("_"))


def _cmd_bench(args) -> int:
    """Runs `python -m bench.<name>` in this process with the remaining arguments (the benchmarks print their
    figures and write JSON)."""
    import runpy

    names = _bench_names()
    if args.name not in names:
        where = f"available: {', '.join(names)}" if names else "the bench package is not installed"
        print(f"[pinsage] no benchmark {args.name!r} ({where})", file=sys.stderr)
        return 2
    sys.argv = [f"bench.{args.name}"] + args.args
    runpy.run_module(f"bench.{args.name}", run_name="__main__", alter_sys=True)
    return 0


def _quiet_known_noise() -> None:
    """Warnings every run prints that tell the user nothing actionable:
    google-api-core's Python 3.10 end-of-support notice and TFX 1.16's ArtifactQuery.property_predicate notice."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")
    logging.getLogger("absl").addFilter(lambda r: "ArtifactQuery.property_predicate" not in r.getMessage())


def _add_run_parser(sub) -> None:
    r = sub.add_parser("run", help="run the TFX pipeline on the local runner")
    add_source_arguments(r)
    r.add_argument("--output", required=True)
    add_run_arguments(r)  # shared with the TFX CLI and Kubeflow runners (pipeline/run_options.py)
    r.add_argument(
        "--serve-and-query",
        action="store_true",
        help="after the run, serve the pushed model over gRPC, print related items, stop the server (nothing "
        "is served when the model was not blessed and so not pushed)",
    )
    r.add_argument(
        "--cold-start-share",
        type=fraction,
        default=0.0,
        metavar="SHARE",
        help="after the run, the item-cold-start evaluation: hold out this share of the items (e.g. 0.1), train "
        "the same pipeline without them, embed them with `pinsage embed`, report against features-only, "
        "co-occurrence and this run's model (OUT/cold_start/; roughly doubles the run's time); 0: off",
    )
    r.add_argument(
        "--cold-start-by",
        choices=HOLD_OUT_BY,
        default=HOLD_OUT_BY[0],
        help="which items: a seeded random sample, or the newest by first interaction",
    )
    r.add_argument("--cold-start-seed", type=int_at_least(0), default=0, help="the random hold-out's seed")
    r.set_defaults(fn=_cmd_run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pinsage", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="materialise a dataset in the CSV contract")
    d.add_argument("--dataset", required=True, choices=DATASETS)
    d.add_argument("--out", required=True)
    d.add_argument("--shuffle-order", type=int_at_least(0), default=None, metavar="SEED", help=SHUFFLE_HELP)
    d.add_argument("--cache-dir", default=None, help="wheel cache (default ~/.cache/pinsage)")
    d.add_argument("--items", type=int_at_least(1), default=SYNTHETIC_DEFAULTS["num_items"])
    d.add_argument("--contexts", type=int_at_least(1), default=SYNTHETIC_DEFAULTS["num_contexts"])
    d.add_argument("--edges", type=int_at_least(1), default=SYNTHETIC_DEFAULTS["num_edges"])
    d.add_argument("--seed", type=int_at_least(0), default=0)
    d.add_argument(
        "--communities",
        type=int_at_least(1),
        default=None,
        help="synthetic: latent communities (default min(32, items / 200))",
    )
    d.add_argument(
        "--locality",
        type=fraction,
        default=0.0,
        metavar="P",
        help="synthetic: share of edges that step to a ring neighbour of the context's previous item "
        "(item-level structure inside communities; 0, the default, has none)",
    )
    d.set_defaults(fn=_cmd_data)

    _add_run_parser(sub)
    _add_embed_parser(sub)

    sv = sub.add_parser(
        "serve", help="TF Serving gRPC + REST API (PredictionService, ModelService) over a pushed model"
    )
    add_serve_arguments(sv)
    sv.set_defaults(fn=_cmd_serve)

    q = sub.add_parser(
        "query",
        help="related items, or recommendations for a history or a context, through TF Serving's gRPC API "
        "(items by title through the server's REST catalogue search)",
    )
    q.add_argument("--host", default="localhost")
    q.add_argument("--port", type=int, default=SERVING.port, help="the server's gRPC port")
    q.add_argument(
        "--rest-api-port",
        "--rest_api_port",
        type=int,
        default=SERVING.rest_api_port,
        help="the server's REST port, for --title",
    )
    q.add_argument("--item", action="append", help="source item id, repeatable")
    q.add_argument(
        "--title",
        action="append",
        help="source item by its exact title (else ignoring case and spacing; no match lists the closest titles "
        "and exits 2), repeatable, after the --item ids",
    )
    q.add_argument("--history", help="recommend for a history: item ids, oldest first, comma-separated")
    q.add_argument("--context", help="recommend for a known context id (its precomputed query vector)")
    q.add_argument("-k", type=int, default=10)
    q.add_argument("--model-name", default="pinsage")
    q.add_argument(
        "--signature",
        default=versions.RELATED_ITEMS,
        help="related_items (u_q . z: what a person engages with next; the default) or similar_items (z_q . z)",
    )
    q.set_defaults(fn=_cmd_query)

    b = sub.add_parser("bench", help="run a benchmark: python -m bench.NAME [its arguments]")
    b.add_argument("name", metavar="NAME", help=f"one of: {', '.join(_bench_names())}")
    b.add_argument("args", nargs=argparse.REMAINDER)
    b.set_defaults(fn=_cmd_bench)

    return p


def main(argv=None) -> int:
    _quiet_known_noise()
    p = build_parser()
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
