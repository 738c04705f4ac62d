"""Scale run: `pinsage data --dataset synthetic` then `pinsage run --data-dir D --output OUT` end to end, with the
wall time of every stage and the peak RSS of the whole process tree (the CLI and any Beam worker processes).

    .venv/bin/python bench/scale.py                                    # 1M items / 300k contexts / 10M edges
    .venv/bin/python bench/scale.py --items 100000 --contexts 30000 --edges 1000000 --train-steps 100
    .venv/bin/python bench/scale.py --reuse-data --epochs 1 --embed in_memory,beam   # a real budget, then refreshes
    .venv/bin/python bench/scale.py --reuse-data --keep-output --embed-only --embed in_memory

--embed STRATEGIES: after the run, `pinsage embed` of its pushed version over the same data once per BulkEmbedder
strategy (in_memory: the fast path; beam: the per-layer Beam joins, on 2 DirectRunner workers in
multi-processing mode), each monitored the same way (its stages: GraphGen, Transform, NeighborhoodSampler,
BulkEmbedder, IndexBuilder, PinSagePusher, ColdStartEvaluation). Targets: the in-memory refresh under 15 minutes
and 12 GiB; a run with at least one epoch of pairs (--epochs 1) under 45 minutes.

Both commands run as child processes; this script reads their progress lines ("[pinsage] stage X ...", "... done
in S s"), samples the RSS summed over the child and all its descendants every --sample-s seconds, and attributes
each sample to the stage running at that moment ("prepare" = ingest + schemas before the first TFX stage, "after"
= data report / report publishing after the last one). Writes bench/results/scale_<items>.json and prints a table.
Targets: every stage but training under 10 minutes in total, the whole run under 30 minutes, peak RSS
under 12 GiB. Other work on the box slows the run: the load average is recorded at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30
_STAGE_START = re.compile(r"^\[pinsage\] stage (?:\d+/\d+ )?(\S+) \.\.\.$")  # "stage 5/17 GraphGen ..."
_STAGE_DONE = re.compile(r"^\[pinsage\] stage (\S+) done in ([0-9.]+) s$")


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all its descendants (bytes); processes that vanish meanwhile count 0."""
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_monitored(cmd: list[str], log_path: str, sample_s: float = 0.5, env=None, on_stage=None) -> dict:
    """Runs cmd, echoes and logs its output, returns wall time, per-stage wall/peak RSS and the overall peak.
    on_stage(partial result) is called after every finished stage (the JSON is kept current during a long run)."""
    stages: dict[str, dict] = {}
    current = ["prepare"]
    peaks: dict[str, int] = {}
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, cwd=ROOT, env=env
    )
    ps = psutil.Process(proc.pid)
    done = threading.Event()
    peak = [0]

    def sample():
        while not done.is_set():
            rss = tree_rss(ps)
            peak[0] = max(peak[0], rss)
            peaks[current[0]] = max(peaks.get(current[0], 0), rss)
            done.wait(sample_s)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    with open(log_path, "w") as log:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            s = line.rstrip("\n")
            if s.startswith("[pinsage]"):
                print(f"[{time.time() - t0:7.1f} s] {s}", flush=True)
            m = _STAGE_START.match(s)
            if m:
                if current[0] == "prepare":
                    stages["prepare"] = {"wall_s": round(time.time() - t0, 1)}
                current[0] = m.group(1)
                stages[m.group(1)] = {"started_s": round(time.time() - t0, 1)}
                continue
            m = _STAGE_DONE.match(s)
            if m:
                stages.setdefault(m.group(1), {})["wall_s"] = float(m.group(2))
                current[0] = "after"
                for name, st in stages.items():
                    st["peak_rss_gib"] = round(peaks.get(name, 0) / GIB, 2)
                if on_stage:
                    on_stage(
                        {
                            "cmd": cmd,
                            "rc": None,
                            "elapsed_s": round(time.time() - t0, 1),
                            "peak_rss_gib": round(peak[0] / GIB, 2),
                            "stages": stages,
                        }
                    )
    rc = proc.wait()
    done.set()
    th.join()
    wall = time.time() - t0
    for name, st in stages.items():
        st["peak_rss_gib"] = round(peaks.get(name, 0) / GIB, 2)
    if "after" in peaks:
        stages["after"] = {"peak_rss_gib": round(peaks["after"] / GIB, 2)}
    return {"cmd": cmd, "rc": rc, "wall_s": round(wall, 1), "peak_rss_gib": round(peak[0] / GIB, 2), "stages": stages}


def _summary(run: dict) -> dict:
    st = run["stages"]
    training = st.get("PinSageTrainer", {}).get("wall_s", 0.0)
    return {
        "total_s": run["wall_s"],
        "training_s": training,
        "all_but_training_s": round(run["wall_s"] - training, 1),
        "stage_sum_s": round(sum(v.get("wall_s", 0.0) for v in st.values()), 1),
        "peak_rss_gib": run["peak_rss_gib"],
        "targets": {
            "all_but_training_under_600_s": run["wall_s"] - training < 600,
            "total_under_1800_s": run["wall_s"] < 1800,
            "peak_rss_under_12_gib": run["peak_rss_gib"] < 12,
        },
    }


def _print_table(result: dict, args, path: str) -> None:
    run = result["run"]
    print(
        f"\n{args.items:,} items / {args.contexts:,} contexts / {args.edges:,} edges, "
        f"load avg {result['load_avg_start']} -> {result['load_avg_end']}, rc {run['rc']}"
    )
    if "data" in result:
        print(f"{'pinsage data':<34} {result['data']['wall_s']:>8.1f} {result['data']['peak_rss_gib']:>8.2f}")
    print(f"{'stage':<34} {'wall s':>8} {'RSS GiB':>8}")
    for name, v in run["stages"].items():
        print(f"{name:<34} {v.get('wall_s', float('nan')):>8.1f} {v.get('peak_rss_gib', float('nan')):>8.2f}")
    s = result["summary"]
    print(f"{'total (pinsage run)':<34} {s['total_s']:>8.1f} {s['peak_rss_gib']:>8.2f}")
    print(f"all but training {s['all_but_training_s']} s, training {s['training_s']} s; targets {s['targets']}")
    print(f"wrote {path}")


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--contexts", type=int, default=300_000)
    ap.add_argument("--edges", type=int, default=10_000_000)
    ap.add_argument("--work-dir", default="/tmp/pinsage_scale")
    ap.add_argument("--train-steps", type=int, default=300, help="pinsage run --train-steps")
    ap.add_argument("--epochs", type=int, default=0, help="train this many epochs of pairs instead of --train-steps")
    ap.add_argument("--embed", default="", help="comma-separated BulkEmbedder strategies to refresh with afterwards")
    ap.add_argument("--embed-only", action="store_true", help="no run: refresh the version an earlier run pushed")
    ap.add_argument("--eval-contexts", type=int, default=10_000, help="pinsage run --eval-contexts")
    ap.add_argument("--reuse-data", action="store_true", help="skip `pinsage data` when D already exists")
    ap.add_argument("--keep-output", action="store_true", help="keep OUT (TFX cache) from an earlier run")
    ap.add_argument("--run-arg", action="append", default=[], help="extra `pinsage run` argument, repeatable")
    ap.add_argument("--sample-s", type=float, default=0.5)
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/scale_<items>.json)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    tag = f"{args.items // 1000}k" if args.items < 1_000_000 else f"{args.items // 1_000_000}m"
    data_dir = os.path.join(args.work_dir, f"data_{tag}")
    out_dir = os.path.join(args.work_dir, f"run_{tag}")
    os.makedirs(args.work_dir, exist_ok=True)
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = {
        "items": args.items,
        "contexts": args.contexts,
        "edges": args.edges,
        "train_steps": args.train_steps,
        "eval_contexts": args.eval_contexts,
        "cpus": os.cpu_count(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if not (args.reuse_data and os.path.exists(os.path.join(data_dir, "interactions.csv"))):
        sizes = ["--items", str(args.items), "--contexts", str(args.contexts), "--edges", str(args.edges)]
        cmd = [py, "-m", "pipeline.cli", "data", "--dataset", "synthetic", *sizes, "--out", data_dir]
        result["data"] = run_monitored(cmd, os.path.join(args.work_dir, f"data_{tag}.log"), args.sample_s, env)
        if result["data"]["rc"]:
            print(f"pinsage data failed, see {args.work_dir}/data_{tag}.log", file=sys.stderr)
            return 1
    if not args.keep_output and os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    name = (
        f"scale_{tag}_embed.json" if args.embed_only else f"scale_{tag}.json"
    )  # a refresh does not overwrite the run's
    path = args.out or os.path.join(ROOT, "bench", "results", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def save(partial):
        with open(path, "w") as f:
            json.dump(dict(result, run=partial, load_avg_now=[round(x, 2) for x in os.getloadavg()]), f, indent=2)

    if args.epochs:
        budget = ["--hparams", json.dumps({"epochs": args.epochs}), "--eval-contexts", str(args.eval_contexts)]
    else:
        budget = ["--train-steps", str(args.train_steps), "--eval-contexts", str(args.eval_contexts)]
    budget.append("--push-unblessed")  # the benchmark times the push too, whatever a short training scores
    rc = 0
    if not args.embed_only:
        cmd = [py, "-m", "pipeline.cli", "run", "--data-dir", data_dir, "--output", out_dir, *budget, *args.run_arg]
        run = run_monitored(cmd, os.path.join(args.work_dir, f"run_{tag}.log"), args.sample_s, env, on_stage=save)
        result["run"] = run
        result["summary"] = _summary(run)
        result["pairs"] = _pairs(out_dir)
        rc = run["rc"]
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    if "run" in result:
        _print_table(result, args, path)
    for strategy in [x for x in args.embed.split(",") if x] if rc == 0 else []:

        def save_embed(partial, strategy=strategy):  # kept current stage by stage, as the run's
            result.setdefault("embed", {})[strategy] = partial
            save(result.get("run"))

        result.setdefault("embed", {})[strategy] = _embed(py, env, args, out_dir, data_dir, tag, strategy, save_embed)
        result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        rc = rc or result["embed"][strategy]["rc"]
    return rc


def _pairs(out_dir: str) -> dict:
    """The run's training budget as its model recorded it: epochs, steps, pairs (modules/trainer's history)."""
    import glob

    found = sorted(glob.glob(os.path.join(out_dir, "tfx", "PinSageTrainer", "model", "*", "history.json")))
    if not found:
        return {}
    with open(found[-1]) as f:
        h = json.load(f)
    keys = ("epoch", "steps_per_epoch", "train_seconds", "pairs_per_second", "num_pairs", "hparams")
    return {k: h.get(k) for k in keys if k in h}


def _embed(py, env, args, out_dir: str, data_dir: str, tag: str, strategy: str, on_stage=None) -> dict:
    """`pinsage embed` of the run's newest pushed version over the same data with one BulkEmbedder strategy,
    pushed to a directory of its own; per-stage wall time and peak RSS as for the run."""
    model_dir = os.path.join(out_dir, "serving_model", "pinsage")
    newest = max(int(v) for v in os.listdir(model_dir) if v.isdigit())
    embed_out = os.path.join(args.work_dir, f"embed_{tag}_{strategy}")
    shutil.rmtree(embed_out, ignore_errors=True)
    cmd = [py, "-m", "pipeline.cli", "embed", "--model", os.path.join(model_dir, str(newest))]
    cmd += ["--data-dir", data_dir, "--output", embed_out, "--push-to", os.path.join(embed_out, "serving")]
    cmd += ["--embed-strategy", strategy]
    if strategy == "beam":
        cmd += ["--beam-arg=--direct_num_workers=2", "--beam-arg=--direct_running_mode=multi_processing"]
    log = os.path.join(args.work_dir, f"embed_{tag}_{strategy}.log")
    res = run_monitored(cmd, log, args.sample_s, env, on_stage=on_stage)
    res["targets"] = {"under_900_s": res["wall_s"] < 900, "peak_rss_under_12_gib": res["peak_rss_gib"] < 12}
    print(f"\npinsage embed ({strategy}): {res['wall_s']} s, peak RSS {res['peak_rss_gib']} GiB, rc {res['rc']}")
    for name, v in res["stages"].items():
        print(f"{name:<34} {v.get('wall_s', float('nan')):>8.1f} {v.get('peak_rss_gib', float('nan')):>8.2f}")
    return res


if __name__ == "__main__":
    sys.exit(main())
