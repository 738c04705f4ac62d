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


def _cmd_run(args) -> int:
    from pipeline import driver, ingest
    from pipeline.pinsage_pipeline import SamplingConfig

    t0 = time.time()
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    sampling = SamplingConfig(num_walks=args.num_walks, top_t=args.top_t, strategy=args.walk_strategy,
                              seed=args.seed)
    beam_args = list(args.beam_arg or [])
    try:
        pipeline, ingest_report = driver.build(output, dataset=args.dataset, data_dir=args.data_dir,
                                               sampling=sampling, beam_args=beam_args,
                                               stop_after=args.stop_after, enable_cache=not args.no_cache,
                                               hparams=json.loads(args.hparams))
    except ingest.InputError as e:
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 2
    print(f"[pinsage] pipeline '{pipeline.pipeline_info.pipeline_name}' with {len(pipeline.components)} "
          f"stages, output {output}", flush=True)
    timings = driver.run_local(pipeline)
    report = driver.write_data_report(output, ingest_report)
    lines = driver.summarize_data_report(report)
    print(f"[pinsage] data report: {os.path.join(output, 'data_report.json')}")
    print("\n".join(lines) if lines else "  no bad input found")
    g = report["graph"]
    if g:
        print(f"[pinsage] graph: {g['num_items']} items, {g['num_contexts']} contexts, "
              f"{g['num_interactions']} interactions "
              f"(train {g['counts'].get('interactions.train', 0)}, "
              f"validation {g['counts'].get('interactions.validation', 0)}, "
              f"test {g['counts'].get('interactions.test', 0)})")
    report_dir = driver.latest_artifact_dir(output, "PinSageEvaluator", "report")
    if report_dir and args.stop_after is None:
        driver.publish_report(report_dir, output)
        print(open(os.path.join(output, "report.md")).read().split("![")[0].rstrip())
        print(f"[pinsage] report: {os.path.join(output, 'report.md')} (and report.json, plots/)")
    with open(os.path.join(output, "timings.json"), "w") as f:
        json.dump({"stages": timings, "total_s": round(time.time() - t0, 1)}, f, indent=2)
    last = {"graph": "GraphGen", "transform": "Transform", "sampling": "NeighborhoodSampler/PairGen"}.get(
        args.stop_after, "PinSageEvaluator")
    print(f"[pinsage] done in {time.time() - t0:.1f} s; the pipeline ended after {last}. Batch embedding, the "
          f"index, push and serving are not wired in yet (issues 5-7).")
    return 0


def main(argv=None) -> int:
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
    r.add_argument("--stop-after", choices=["graph", "transform", "sampling"], default=None,
                   help="build only the pipeline up to this stage")
    r.add_argument("--hparams", default="{}", help="JSON overrides of modules.model.PinSageHParams, "
                   "e.g. '{\"epochs\": 5, \"loss\": \"max_margin\"}'")
    r.add_argument("--num-walks", type=int, default=200)
    r.add_argument("--top-t", type=int, default=10)
    r.add_argument("--walk-strategy", choices=["in_memory", "join"], default="in_memory")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--no-cache", action="store_true", help="disable the TFX execution cache")
    r.add_argument("--beam-arg", action="append",
                   help="a Beam pipeline option, repeatable, e.g. --beam-arg=--direct_num_workers=2")
    r.set_defaults(fn=_cmd_run)

    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
