"""The options of a run, one definition for every runner: `pinsage run` (cli.py), the TFX CLI runner
(local_runner.py, configured by PINSAGE_* environment variables) and the Kubeflow compiler (kubeflow_v2_runner.py)
add the same argparse arguments and turn them into a configs.RunConfig with the same function, `run_config`, so
they offer the same options and refuse a bad one with the same one-line message (a ValueError: each runner prints
it and exits 2) before any data is read.

Light on purpose (no TensorFlow, TFX or Beam at import): `pinsage --help` imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex

from pipeline.configs import (
    BLESSING,
    BLESSING_METRICS,
    DATASETS,
    EMBED,
    EMBED_STRATEGIES,
    HISTORY,
    INGEST,
    SAMPLING,
    SOURCE_CHOICES,
    STAGES,
    WALK_STRATEGIES,
    RunConfig,
    check_context_tower,
    check_hparams,
)

SHUFFLE_HELP = (
    "the order-free check: permute each context's timestamps among its own interactions with this seed "
    "(same sets and counts, no sequence); <dataset>-unordered = seed 0"
)
ENV_PREFIX = "PINSAGE_"  # local_runner.py: PINSAGE_<FLAG> sets --<flag>, e.g. PINSAGE_TOP_T=20
DEFAULT_ENV_DATASET = "ml-100k"  # the TFX CLI runner's dataset when neither PINSAGE_DATASET nor PINSAGE_DATA_DIR is set


def int_at_least(lo: int):
    """An argparse type: an integer >= lo (argparse turns the ValueError into a usage error, exit 2)."""

    def parse(text: str) -> int:
        v = int(text)
        if v < lo:
            raise ValueError(text)
        return v

    parse.__name__ = f"integer >= {lo}"
    return parse


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1) (argparse turns the ValueError into a usage error, exit 2)."""
    v = float(text)
    if not 0.0 <= v < 1.0:  # also refuses nan
        raise ValueError(text)
    return v


fraction.__name__ = "number in [0, 1)"


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """--dataset or --data-dir, exactly one."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=DATASETS)
    src.add_argument("--data-dir")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of RunConfig but the data source (add_source_arguments), in `pinsage run --help`'s order."""
    p.add_argument("--shuffle-order", type=int_at_least(0), default=None, metavar="SEED", help=SHUFFLE_HELP)
    p.add_argument("--stop-after", choices=STAGES, default=None, help="build only the pipeline up to this stage")
    p.add_argument(
        "--hparams",
        default="{}",
        help='JSON overrides of modules.model.PinSageHParams, e.g. \'{"epochs": 5, "loss": "max_margin"}\'',
    )
    p.add_argument(
        "--train-steps",
        type=int_at_least(1),
        default=None,
        help="step budget: train for at most this many steps in total (sets epochs / steps_per_epoch "
        "of the hparams; see pipeline/run_options.step_budget_hparams)",
    )
    p.add_argument(
        "--eval-contexts",
        type=int_at_least(1),
        default=None,
        help="evaluate a fixed random sample of at most this many contexts per split (the report "
        "states the sample size); default: every context",
    )
    p.add_argument(
        "--embed-strategy",
        choices=EMBED_STRATEGIES,
        default=EMBED.strategy,
        help="BulkEmbedder: the Beam join per layer, or one in-memory layer-wise pass; auto = "
        "in_memory on the in-process DirectRunner, beam when a --beam-arg names another runner",
    )
    _add_sampling_arguments(p)
    _add_context_tower_arguments(p)
    for flag, field in (("--max-id-length", "max_id_length"), ("--max-cell-length", "max_cell_length")):
        p.add_argument(
            flag,
            type=int_at_least(1),
            default=None,
            help=f"ingest: UTF-8 bytes per {'id' if 'id' in field else 'feature cell'} (longer: "
            f"{'row dropped' if 'id' in field else 'cell blanked'}, counted); default: dataset.yaml's "
            f"limits.{field}, else {getattr(INGEST, field)} (pipeline/configs.IngestLimits)",
        )
    p.add_argument(
        "--ablations",
        nargs="*",
        default=None,
        metavar="NAME",
        help="also train and report the ablation variants of modules/model.ABLATIONS (all of them "
        "when no name is given): pooling, hard negatives, loss, features-only MLP, id-only",
    )
    _add_blessing_arguments(p)
    p.add_argument("--no-cache", action="store_true", help="disable the TFX execution cache")
    p.add_argument(
        "--beam-arg", action="append", help="a Beam pipeline option, repeatable, e.g. --beam-arg=--direct_num_workers=2"
    )


def _add_context_tower_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--context-tower-hparams",
        default="{}",
        metavar="JSON",
        help="JSON overrides of modules.context_tower.ContextTowerConfig (the tower that recommends from a history), "
        'e.g. \'{"form": "set", "epochs": 10}\'; form auto (default) is picked by a validation probe',
    )
    p.add_argument(
        "--no-context-tower",
        action="store_true",
        help="leave out the context tower's training and the report's history section",
    )


def _add_blessing_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--blessing-metric",
        choices=BLESSING_METRICS,
        default=BLESSING.metric,
        help="the metric the Evaluator blesses the model on: it must not be behind the best baseline of each "
        "served list (a paired test difference past z standard errors; pipeline/configs.BlessingConfig)",
    )
    p.add_argument(
        "--push-unblessed",
        action="store_true",
        help="push the model even when the Evaluator did not bless it (by default an unblessed model is not pushed)",
    )


def _add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-walks", type=int_at_least(1), default=SAMPLING.num_walks)
    p.add_argument("--top-t", type=int_at_least(1), default=SAMPLING.top_t)
    p.add_argument("--walk-strategy", choices=WALK_STRATEGIES, default=SAMPLING.strategy)
    p.add_argument(
        "--neighborhood-source",
        choices=SOURCE_CHOICES,
        default=SAMPLING.neighborhood_source,
        help="importance neighbourhoods: auto (default: build both random-walk and transition-count tables and "
        "keep the one with the better validation MRR, pipeline/sampling/probe.py), top-T by random-walk visits "
        "(the paper), by sequential transition counts, or a mix",
    )
    p.add_argument("--seed", type=int_at_least(0), default=SAMPLING.seed)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of parsed run arguments (add_source_arguments + add_run_arguments), checked: a ValueError
    with one line naming the bad option (a --hparams key or value, a --beam-arg, an ablation, ...)."""
    import dataclasses

    hparams = check_hparams(json_object("--hparams", args.hparams))
    if args.train_steps:
        hparams = step_budget_hparams(hparams, args.train_steps)
    sampling = dataclasses.replace(
        SAMPLING,
        num_walks=args.num_walks,
        top_t=args.top_t,
        strategy=args.walk_strategy,
        neighborhood_source=args.neighborhood_source,
        seed=args.seed,
    )
    return RunConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        shuffle_seed=args.shuffle_order,
        stop_after=args.stop_after,
        hparams=hparams,
        eval_contexts=args.eval_contexts,
        ablations=_ablations(args.ablations),
        sampling=sampling,
        embed=dataclasses.replace(EMBED, strategy=args.embed_strategy),
        blessing=dataclasses.replace(BLESSING, metric=args.blessing_metric, push_unblessed=args.push_unblessed),
        context_tower=check_context_tower(json_object("--context-tower-hparams", args.context_tower_hparams)),
        history=dataclasses.replace(HISTORY, enabled=not args.no_context_tower),
        ingest_limits={"max_id_length": args.max_id_length, "max_cell_length": args.max_cell_length},
        beam_args=beam_args(args.beam_arg),
        enable_cache=not args.no_cache,
    )


def step_budget_hparams(hparams: dict | None, steps: int) -> dict:
    """hparams overrides that cap training at `steps` optimizer steps in total (`pinsage run --train-steps`):
    one epoch of `steps` steps, or, when the overrides name `epochs`, steps // epochs per epoch (at least 1)."""
    if steps < 1:
        raise ValueError(f"the step budget must be >= 1, got {steps}")
    out = dict(hparams or {})
    epochs = int(out.get("epochs", 1))
    if epochs > steps:
        epochs = steps
    out.update(epochs=epochs, steps_per_epoch=steps // epochs)
    return out


def _ablations(names: list[str] | None) -> tuple[str, ...]:
    """--ablations NAME...: those; --ablations alone: every one of modules.model.ABLATIONS; absent: none."""
    if names is None:
        return ()
    if names:
        return tuple(names)  # RunConfig checks the names
    from modules.model import ABLATIONS

    return tuple(sorted(ABLATIONS))


def beam_args(values: list[str] | None) -> tuple[str, ...]:
    """The --beam-arg values, parsed by Beam now: a bad value (e.g. --direct_num_workers=two) is then a
    ValueError with Beam's one-line reason before the run, not a traceback inside a stage (Beam's own argparse
    would print its usage of every runner's options)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(values or [])
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            PipelineOptions(args).get_all_options()
    except SystemExit:
        reason = err.getvalue().strip().splitlines()[-1:] or ["not valid"]
        raise ValueError(f"--beam-arg {args}: {reason[0].split('error: ', 1)[-1]}") from None
    return tuple(args)


def json_object(flag: str, value: str) -> dict:
    """The JSON object a flag holds (ValueError naming the flag otherwise)."""
    try:
        out = json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} is not valid JSON ({e.msg} at character {e.pos}): {value!r}") from None
    if not isinstance(out, dict):
        raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"epochs\": 5}}', got {value!r}")
    return out


class _RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ValueErrors (the environment has no usage line to print)."""

    def error(self, message):
        raise ValueError(f"{message} (from the {ENV_PREFIX}* environment variables)")


def env_parser() -> argparse.ArgumentParser:
    p = _RaisingParser(prog="pipeline/local_runner.py", add_help=False)
    add_source_arguments(p)
    add_run_arguments(p)
    return p


def env_argv(environ) -> list[str]:
    """The run flags that PINSAGE_* environment variables spell: PINSAGE_<DEST> for --<dest> (PINSAGE_TOP_T=20,
    PINSAGE_HPARAMS='{"epochs": 2}', PINSAGE_NO_CACHE=1, PINSAGE_PUSH_UNBLESSED=1,
    PINSAGE_CONTEXT_TOWER_HPARAMS='{"form": "set"}', PINSAGE_NO_CONTEXT_TOWER=1, PINSAGE_ABLATIONS='pooling loss' or 'all',
    PINSAGE_BEAM_ARG='--direct_num_workers=2 --direct_running_mode=multi_processing'); an empty one is unset.
    Without PINSAGE_DATA_DIR or PINSAGE_DATASET the dataset is DEFAULT_ENV_DATASET."""
    argv = []
    if not (environ.get(ENV_PREFIX + "DATA_DIR") or environ.get(ENV_PREFIX + "DATASET")):
        argv += ["--dataset", DEFAULT_ENV_DATASET]
    for action in env_parser()._actions:
        value = environ.get(ENV_PREFIX + action.dest.upper(), "")
        if not value or not action.option_strings:
            continue
        if action.dest == "dataset" and environ.get(ENV_PREFIX + "DATA_DIR"):  # a directory given wins
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:  # --no-cache, --push-unblessed
            if value.strip().lower() in ("1", "true", "yes", "on"):
                argv.append(flag)
        elif action.nargs == "*":  # --ablations
            argv += [flag] + ([] if value.strip() == "all" else shlex.split(value))
        elif isinstance(action, argparse._AppendAction):  # --beam-arg
            argv += [f"{flag}={v}" for v in shlex.split(value)]
        else:
            argv += [flag, value]
    return argv


def run_config_from_env(environ) -> RunConfig:
    """The TFX CLI runner's RunConfig: env_argv parsed as `pinsage run` parses its flags, then run_config."""
    return run_config(env_parser().parse_args(env_argv(environ)))
