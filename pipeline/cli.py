"""`pinsage` command line: data, run (and, as later stages land, serve / query / bench)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402


def _cmd_data(args) -> int:
    from pipeline import datasets

    kw = {}
    if args.dataset == "synthetic":
        kw = dict(items=args.items, contexts=args.contexts, edges=args.edges, seed=args.seed)
    summary = datasets.materialise(args.dataset, args.out, cache_dir=args.cache_dir, **kw)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _ablations(args) -> list[str] | None:
    if args.ablations is None:
        return None
    from modules.model import ABLATIONS

    unknown = sorted(set(args.ablations) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"unknown ablation(s) {unknown}; known: {sorted(ABLATIONS)}")
    return list(args.ablations) or sorted(ABLATIONS)


def _cmd_run(args) -> int:
    t0 = time.time()  # before the TensorFlow/TFX imports: the total is the wall time the user waits
    from pipeline import driver, ingest
    from pipeline.pinsage_pipeline import SamplingConfig

    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    sampling = SamplingConfig(
        num_walks=args.num_walks,
        top_t=args.top_t,
        strategy=args.walk_strategy,
        neighborhood_source=args.neighborhood_source,
        seed=args.seed,
    )
    beam_args = list(args.beam_arg or [])
    hparams = json.loads(args.hparams)
    if args.train_steps:
        from pipeline.pinsage_pipeline import step_budget_hparams

        hparams = step_budget_hparams(hparams, args.train_steps)
    try:
        ablations = _ablations(args)
    except ValueError as e:
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 2
    t_build = time.time()
    try:
        pipeline, ingest_report = driver.build(
            output,
            dataset=args.dataset,
            data_dir=args.data_dir,
            sampling=sampling,
            beam_args=beam_args,
            stop_after=args.stop_after,
            enable_cache=not args.no_cache,
            hparams=hparams,
            eval_contexts=args.eval_contexts,
            embed_strategy=args.embed_strategy,
            ablations=ablations,
        )
    except ingest.InputError as e:
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 2
    ingest_s = round(time.time() - t_build, 1)
    print(
        f"[pinsage] ingest done in {ingest_s:.1f} s: {ingest_report['items']['rows_kept']} items, "
        f"{ingest_report['interactions']['rows_kept']} interactions kept",
        flush=True,
    )
    print(
        f"[pinsage] pipeline '{pipeline.pipeline_info.pipeline_name}' with {len(pipeline.components)} "
        f"stages, output {output}",
        flush=True,
    )
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
    g = report["graph"]
    if g:
        print(
            f"[pinsage] graph: {g['num_items']} items, {g['num_contexts']} contexts, "
            f"{g['num_interactions']} interactions "
            f"(train {g['counts'].get('interactions.train', 0)}, "
            f"validation {g['counts'].get('interactions.validation', 0)}, "
            f"test {g['counts'].get('interactions.test', 0)})"
        )
    # a cache hit takes ~0.1 s: keep each stage's wall time from when it last ran, for the report
    executed = {}
    try:
        with open(os.path.join(output, "timings.json")) as f:
            executed = dict(json.load(f).get("executed", {}))
    except (OSError, ValueError):
        pass
    executed.update({k: v for k, v in timings.items() if k not in timings.cached})
    report_dir = driver.latest_artifact_dir(output, "PinSageEvaluator", "report")
    report_html = None
    if report_dir and args.stop_after in (None, "evaluation"):
        print("[pinsage] report: example queries from the run's index ...", flush=True)
        examples = driver.example_queries(output) if args.stop_after is None else None
        report_html = driver.publish_report(
            report_dir,
            output,
            data_report=report,
            examples=examples or [],
            timings={
                "stages": {"ingest": ingest_s, **timings},
                "cached": timings.cached,
                "executed": executed,
                "pipeline_s": pipeline_s,
            },
        )
        md = open(os.path.join(output, "report.md"), encoding="utf-8").read()
        quality = md[md.index("## Quality vs baselines") :].split("\n## ")[0]
        print(quality.split("![")[0].rstrip())
        print("\n".join(ln for ln in md.splitlines() if ln.startswith("Kurtosis of pairwise")))
    if args.serve_and_query and args.stop_after is None:
        serve_and_query(output)
    with open(os.path.join(output, "timings.json"), "w") as f:
        json.dump(
            {
                "stages": timings,
                "cached": timings.cached,
                "executed": executed,
                "ingest_s": ingest_s,
                "pipeline_s": pipeline_s,
                "total_s": round(time.time() - t0, 1),
            },
            f,
            indent=2,
        )
    last = {
        "graph": "GraphGen",
        "transform": "Transform",
        "sampling": "NeighborhoodSampler/PairGen",
        "evaluation": "PinSageEvaluator",
    }.get(args.stop_after, "PinSagePusher")
    if report_html:
        print(f"[pinsage] report: {report_html} (and report.md, report.json, plots/)")
    print(
        f"[pinsage] done in {time.time() - t0:.1f} s (pipeline {pipeline_s:.1f} s, "
        f"{len(timings.cached)} of {len(timings)} stages from the TFX cache); the pipeline ended after {last}."
    )
    return 0


def _cmd_serve(args) -> int:
    import logging

    from serving.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(
            args.model_base_path,
            args.port,
            model_name=args.model_name,
            poll_seconds=args.poll_seconds,
            processes=args.processes,
        )
    except (OSError, ValueError) as e:  # the port is taken, --processes without a fixed port
        print(f"pinsage serve: error: {e}", file=sys.stderr)
        return 1
    return 0


def _print_related(result: dict, queries: list[str], query_titles: list[str] | None = None) -> None:
    for i, q in enumerate(queries):
        label = f"{q}  {query_titles[i]}" if query_titles and query_titles[i] else q
        print(f"\nrelated to {label}:")
        titles = result.get("titles", [[""] * len(result["item_ids"][i])] * len(queries))
        for rank, (item, score, title) in enumerate(zip(result["item_ids"][i], result["scores"][i], titles[i]), 1):
            ident = f"id {item}, " if title and title != item else ""
            print(f"  {rank:>2}. {title or item}  ({ident}score {score:.3f})")


def _cmd_query(args) -> int:
    import grpc

    from serving.client import related

    try:
        result = related(f"{args.host}:{args.port}", args.item, args.k, model_name=args.model_name)
    except grpc.RpcError as e:
        print(f"[pinsage] {e.code().name}: {e.details()}", file=sys.stderr)
        return 2
    _print_related(result, args.item)
    return 0


def serve_and_query(output: str, num_queries: int = 3, k: int = 10, port: int = 0) -> dict:
    """Starts the server on the run's pushed model, asks for the related items of the most engaged items
    through the TF Serving gRPC API, prints them, stops the server. Returns the responses."""
    import numpy as np

    from pipeline import driver, graph_io
    from serving.client import related
    from serving.server import serve

    g = graph_io.load_graph(driver.latest_artifact_dir(output, "GraphGen", "graph"))
    queries = [str(x) for x in g.item_ids[np.argsort(-g.train_degree, kind="stable")[:num_queries]]]
    server = serve(os.path.join(output, "serving_model", "pinsage"), port, block=False, poll_seconds=60)
    try:
        print(
            f"[pinsage] serving {os.path.join(output, 'serving_model', 'pinsage')} on port {server.port} "
            f"(version {server.current.version}); querying the {num_queries} most engaged items"
        )
        result = related(f"localhost:{server.port}", queries, k)
        _print_related(result, queries, _titles_of(output, queries))
    finally:
        server.stop()
        print("[pinsage] server stopped")
    return result


def _titles_of(output: str, ids: list[str]) -> list[str]:
    from pipeline import driver, index_builder

    emb_dir = driver.latest_artifact_dir(output, "BulkEmbedder", "embeddings")
    try:
        _, all_ids, titles = index_builder.read_embeddings(emb_dir)
    except (OSError, TypeError):
        return [""] * len(ids)
    pos = {x: i for i, x in enumerate(all_ids)}
    return [titles[pos[x]] if titles and x in pos else "" for x in ids]


BENCHES = ("sampling", "training", "embedding", "index", "serving", "baselines", "quality", "scale")


def _cmd_bench(args) -> int:
    """Runs bench/<name>.py of this checkout with the remaining arguments (the scripts print and write JSON)."""
    import runpy

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", f"{args.name}.py")
    if not os.path.exists(script):
        print(f"[pinsage] {script} not found: benchmarks run from a source checkout", file=sys.stderr)
        return 2
    sys.argv = [script] + args.args
    runpy.run_path(script, run_name="__main__")
    return 0


def _quiet_known_noise() -> None:
    """Warnings every run prints that tell the user nothing actionable (recorded in BUILD_NOTES.md):
    google-api-core's Python 3.10 end-of-support notice and TFX 1.16's ArtifactQuery.property_predicate notice."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")
    logging.getLogger("absl").addFilter(lambda r: "ArtifactQuery.property_predicate" not in r.getMessage())


def main(argv=None) -> int:
    _quiet_known_noise()
    p = argparse.ArgumentParser(prog="pinsage", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="materialise a dataset in the CSV contract")
    d.add_argument("--dataset", required=True, choices=["ml-100k", "ml-1m", "synthetic"])
    d.add_argument("--out", required=True)
    d.add_argument("--cache-dir", default=None, help="wheel cache (default ~/.cache/pinsage)")
    d.add_argument("--items", type=int, default=10000)
    d.add_argument("--contexts", type=int, default=3000)
    d.add_argument("--edges", type=int, default=100000)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=_cmd_data)

    r = sub.add_parser("run", help="run the TFX pipeline on the local runner")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=["ml-100k", "ml-1m", "synthetic"])
    src.add_argument("--data-dir")
    r.add_argument("--output", required=True)
    r.add_argument(
        "--stop-after",
        choices=["graph", "transform", "sampling", "evaluation"],
        default=None,
        help="build only the pipeline up to this stage",
    )
    r.add_argument(
        "--hparams",
        default="{}",
        help='JSON overrides of modules.model.PinSageHParams, e.g. \'{"epochs": 5, "loss": "max_margin"}\'',
    )
    r.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help="step budget: train for at most this many steps in total (sets epochs / steps_per_epoch "
        "of the hparams; see pinsage_pipeline.step_budget_hparams)",
    )
    r.add_argument(
        "--eval-contexts",
        type=int,
        default=None,
        help="evaluate a fixed random sample of at most this many contexts per split (the report "
        "states the sample size); default: every context",
    )
    r.add_argument(
        "--embed-strategy",
        choices=["auto", "beam", "in_memory"],
        default="auto",
        help="BulkEmbedder: the Beam join per layer, or one in-memory layer-wise pass; auto = "
        "in_memory on the in-process DirectRunner, beam when a --beam-arg names another runner",
    )
    r.add_argument("--num-walks", type=int, default=200)
    r.add_argument("--top-t", type=int, default=10)
    r.add_argument("--walk-strategy", choices=["in_memory", "join"], default="in_memory")
    r.add_argument(
        "--neighborhood-source",
        choices=["random_walk", "transitions", "mixed"],
        default="transitions",
        help="importance neighbourhoods: top-T by sequential transition "
        "counts (default; best validation HR@10 on ML-1M, bench/QUALITY.md), random-walk visits "
        "(the paper), or a mix",
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--ablations",
        nargs="*",
        default=None,
        metavar="NAME",
        help="also train and report the ablation variants of modules/model.ABLATIONS (all of them "
        "when no name is given): pooling, hard negatives, loss, features-only MLP, id-only",
    )
    r.add_argument("--no-cache", action="store_true", help="disable the TFX execution cache")
    r.add_argument(
        "--beam-arg", action="append", help="a Beam pipeline option, repeatable, e.g. --beam-arg=--direct_num_workers=2"
    )
    r.add_argument(
        "--serve-and-query",
        action="store_true",
        help="after the run, serve the pushed model over gRPC, print related items, stop the server",
    )
    r.set_defaults(fn=_cmd_run)

    sv = sub.add_parser("serve", help="TF Serving gRPC API (PredictionService, ModelService) over a pushed model")
    sv.add_argument("--model-base-path", required=True, help="OUT/serving_model/pinsage")
    sv.add_argument("--port", type=int, default=8500)
    sv.add_argument("--model-name", default=None)
    sv.add_argument("--poll-seconds", type=float, default=5.0)
    sv.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT); one per core for throughput",
    )
    sv.set_defaults(fn=_cmd_serve)

    q = sub.add_parser("query", help="related items through the TF Serving gRPC API")
    q.add_argument("--host", default="localhost")
    q.add_argument("--port", type=int, default=8500)
    q.add_argument("--item", action="append", required=True, help="source item id, repeatable")
    q.add_argument("-k", type=int, default=10)
    q.add_argument("--model-name", default="pinsage")
    q.set_defaults(fn=_cmd_query)

    b = sub.add_parser("bench", help="run a benchmark: bench/<name>.py [its arguments]")
    b.add_argument("name", choices=BENCHES)
    b.add_argument("args", nargs=argparse.REMAINDER)
    b.set_defaults(fn=_cmd_bench)

    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
