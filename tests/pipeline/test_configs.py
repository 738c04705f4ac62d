"""One source of every default and one way to configure a run: the CLI, the components and the library functions
take their defaults from pipeline/configs.py (and serving/flags.py), so wiring a component directly gives the same
model as `pinsage run`; every runner builds its RunConfig with pipeline/run_options.run_config."""

import dataclasses
import inspect
import os
import re

import pytest

from pipeline import cli, configs, run_options
from pipeline.components import neighborhood_sampler, pair_gen
from pipeline.components.bulk_embedder import BulkEmbedder
from pipeline.components.context_tower_trainer import ContextTowerTrainer
from pipeline.components.evaluator import PinSageEvaluator
from pipeline.components.neighborhood_sampler import NeighborhoodSampler
from pipeline.components.pair_gen import PairGen
from pipeline.components.pusher import PinSagePusher
from pipeline.data import datasets
from pipeline.push import pusher
from pipeline.sampling import ppr, random_walks, transitions
from tests.fixtures import REPO_ROOT


def parse(*argv):
    p = cli.build_parser()
    return p.parse_args(list(argv))


def defaults(fn) -> dict:
    return {k: v.default for k, v in inspect.signature(fn).parameters.items() if v.default is not inspect._empty}


def test_run_flags_default_to_the_configs():
    args = parse("run", "--dataset", "ml-100k", "--output", "out")
    s = configs.SamplingConfig()
    assert (args.num_walks, args.top_t, args.walk_strategy, args.neighborhood_source, args.seed) == (
        s.num_walks,
        s.top_t,
        s.strategy,
        s.neighborhood_source,
        s.seed,
    )
    assert args.embed_strategy == configs.EMBED.strategy
    # nothing the CLI passes differs from the configs: the defaults' RunConfig is RunConfig() of the dataset
    assert run_options.run_config(args) == configs.RunConfig(dataset="ml-100k")


def test_components_take_their_config_as_one_value():
    s, p = configs.SAMPLING, configs.PAIRS
    assert defaults(NeighborhoodSampler.__init__) == {"config": s}
    assert defaults(PairGen.__init__) == {"config": p, "sampling": s}
    assert defaults(BulkEmbedder.__init__) == {"config": configs.EMBED}
    assert defaults(PinSagePusher.__init__)["config"] == configs.PUSH
    assert defaults(PinSagePusher.__init__)["push_unblessed"] == configs.BLESSING.push_unblessed
    assert defaults(PinSageEvaluator.__init__)["blessing"] == configs.BLESSING
    assert defaults(ContextTowerTrainer.__init__)["probe_contexts"] == configs.HISTORY.probe_contexts
    assert defaults(pusher.push)["keep"] == configs.PUSH.keep
    # the parameters the TFX cache keys on: every config field, under the executors' names
    props = neighborhood_sampler.exec_properties(s)
    assert (props["num_walks"], props["top_t"], props["source"], props["window"]) == (
        s.num_walks,
        s.top_t,
        s.neighborhood_source,
        s.pair_window,
    )
    props = pair_gen.exec_properties(p, s)
    assert {k: props[k] for k in vars(p)} == vars(p) and (props["window"], props["seed"]) == (s.pair_window, s.seed)
    assert s.neighborhood_source == "auto" and set(configs.PROBE_CANDIDATES) <= set(configs.NEIGHBORHOOD_SOURCES)


def test_library_functions_default_to_the_configs():
    s = configs.SAMPLING
    w = random_walks.WalkParams()
    assert (w.num_walks, w.walk_length, w.restart_prob, w.top_t, w.seed) == (
        s.num_walks,
        s.walk_length,
        s.restart_prob,
        s.top_t,
        s.seed,
    )
    assert defaults(transitions.transition_neighborhoods)["top_t"] == s.top_t
    assert defaults(transitions.neighborhoods_from_graph)["window"] == s.pair_window
    assert ppr.DEFAULT_WINDOW == (configs.PAIRS.negative_lo, configs.PAIRS.negative_hi)
    assert transitions.SOURCES == configs.NEIGHBORHOOD_SOURCES


def test_every_default_is_stated_once():
    """No `top_t: int = 10` or `top_t=10` under pipeline/ restating a sampling / pair / embed default's value."""
    classes = (configs.SamplingConfig, configs.PairConfig, configs.EmbedConfig)
    numbers = {
        f.name: f.default
        for c in classes
        for f in dataclasses.fields(c)
        if type(f.default) in (int, float) and f.name != "seed"
    }
    found = []
    for d, _, names in os.walk(os.path.join(REPO_ROOT, "pipeline")):
        for path in (os.path.join(d, n) for n in names if n.endswith(".py") and n != "configs.py"):
            text = open(path, encoding="utf-8").read()
            for name, value in numbers.items():
                literal = rf"{value:_}|{value}" if isinstance(value, int) else rf"{value}"
                pattern = rf"\b{name}(: \w+)? ?= ?({literal})(?![\w.])"
                found += [f"{os.path.relpath(path, REPO_ROOT)}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not found, found


def test_synthetic_dataset_defaults_are_one():
    args = parse("data", "--dataset", "synthetic", "--out", "o")
    assert (args.items, args.contexts, args.edges) == (
        datasets.SYNTHETIC_DEFAULTS["num_items"],
        datasets.SYNTHETIC_DEFAULTS["num_contexts"],
        datasets.SYNTHETIC_DEFAULTS["num_edges"],
    )
    assert datasets.SYNTHETIC_DEFAULTS is configs.SYNTHETIC_DEFAULTS
    d = defaults(datasets.load_synthetic)
    assert (d["num_items"], d["num_contexts"], d["num_edges"]) == (args.items, args.contexts, args.edges)


def test_run_passes_the_shuffle_order():
    assert run_options.run_config(parse("run", "--dataset", "ml-1m", "--output", "o")).shuffle_seed is None
    args = parse("run", "--dataset", "ml-1m", "--shuffle-order", "3", "--output", "o")
    assert run_options.run_config(args).shuffle_seed == 3
    assert parse("run", "--dataset", "ml-1m-unordered", "--output", "o").dataset == "ml-1m-unordered"


def test_run_config_holds_every_run_option():
    args = parse(
        "run",
        "--data-dir",
        "d",
        "--output",
        "o",
        "--stop-after",
        "sampling",
        "--hparams",
        '{"epochs": 3}',
        "--train-steps",
        "30",
        "--eval-contexts",
        "500",
        "--embed-strategy",
        "beam",
        "--top-t",
        "20",
        "--max-id-length",
        "64",
        "--ablations",
        "--blessing-metric",
        "mrr",
        "--push-unblessed",
        "--no-cache",
        "--beam-arg=--direct_num_workers=2",
    )
    c = run_options.run_config(args)
    assert c.blessing == dataclasses.replace(configs.BLESSING, metric="mrr", push_unblessed=True)
    assert (c.data_dir, c.dataset, c.stop_after, c.eval_contexts) == ("d", None, "sampling", 500)
    assert c.hparams == {"epochs": 3, "steps_per_epoch": 10}
    assert c.sampling == dataclasses.replace(configs.SAMPLING, top_t=20) and c.embed.strategy == "beam"
    assert c.ingest_limits == {"max_id_length": 64} and c.beam_args == ("--direct_num_workers=2",)
    assert c.enable_cache is False and len(c.ablations) > 1  # --ablations alone: every variant
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.stop_after = None


@pytest.mark.parametrize(
    "hparams, message",
    [
        ('{"bogus": 1}', r"--hparams: unknown name\(s\) \['bogus'\]"),
        ('{"epochs": "two"}', "--hparams: epochs is 'two'"),
        ("[1]", "--hparams must be a JSON object"),
    ],
)
def test_a_bad_run_option_is_one_value_error(hparams, message):
    with pytest.raises(ValueError, match=message):
        run_options.run_config(parse("run", "--dataset", "ml-100k", "--output", "o", "--hparams", hparams))
    with pytest.raises(ValueError, match=r"unknown ablation\(s\) \['nope'\]"):
        run_options.run_config(parse("run", "--dataset", "ml-100k", "--output", "o", "--ablations", "nope"))
    with pytest.raises(ValueError, match="--stop-after must be one of"):
        configs.RunConfig(stop_after="everything")


def test_the_environment_spells_the_same_options():
    env = {
        "PINSAGE_DATA_DIR": "d",
        "PINSAGE_DATASET": "ml-1m",  # a directory given wins, as before
        "PINSAGE_STOP_AFTER": "graph",
        "PINSAGE_HPARAMS": '{"epochs": 2}',
        "PINSAGE_TOP_T": "20",
        "PINSAGE_NO_CACHE": "1",
        "PINSAGE_PUSH_UNBLESSED": "1",
        "PINSAGE_BLESSING_METRIC": "ndcg@10",
        "PINSAGE_ABLATIONS": "all",
        "PINSAGE_BEAM_ARG": "--direct_num_workers=2 --direct_running_mode=multi_processing",
        "PINSAGE_OUTPUT": "ignored here",
    }
    want = parse(
        "run",
        "--data-dir",
        "d",
        "--output",
        "o",
        "--stop-after",
        "graph",
        "--hparams",
        '{"epochs": 2}',
        "--top-t",
        "20",
        "--no-cache",
        "--push-unblessed",
        "--blessing-metric",
        "ndcg@10",
        "--ablations",
        "--beam-arg=--direct_num_workers=2",
        "--beam-arg=--direct_running_mode=multi_processing",
    )
    assert run_options.run_config(want).blessing.push_unblessed is True
    assert run_options.run_config_from_env(env) == run_options.run_config(want)
    assert run_options.run_config_from_env({}) == configs.RunConfig(dataset=run_options.DEFAULT_ENV_DATASET)
    with pytest.raises(ValueError, match=r"--hparams: unknown name\(s\) \['bogus'\]"):
        run_options.run_config_from_env({"PINSAGE_HPARAMS": '{"bogus": 1}'})
    with pytest.raises(ValueError, match="--top-t.*PINSAGE_"):
        run_options.run_config_from_env({"PINSAGE_TOP_T": "0"})


def test_the_blessing_config_is_checked():
    assert configs.BLESSING.metric == "hr@10" and configs.BLESSING.z == 2.0 and not configs.BLESSING.push_unblessed
    assert configs.BLESSING.baselines() == {"related_items": None, "similar_items": configs.SIMILARITY_BASELINES}
    with pytest.raises(ValueError, match="--blessing-metric must be one of"):
        configs.RunConfig(blessing=configs.BlessingConfig(metric="coverage@10"))
    with pytest.raises(ValueError, match="z must be a number >= 0"):
        configs.RunConfig(blessing=configs.BlessingConfig(z=float("nan")))
    with pytest.raises(SystemExit):  # argparse: a usage error, exit 2
        parse("run", "--dataset", "ml-100k", "--output", "o", "--blessing-metric", "hr@500")


def test_the_pusher_reads_the_evaluators_blessing(tmp_path):
    """The wiring: PinSagePusher's model_blessing is PinSageEvaluator's blessing (a ModelBlessing) and the run's
    BlessingConfig reaches both components; a pipeline that stops at the evaluation still has the blessing."""
    from pipeline import pipeline as pp

    inputs = pp.PipelineInputs(str(tmp_path), "i.pbtxt", "x.pbtxt", "r.json", {}, "g.pbtxt", "d")
    blessing = dataclasses.replace(configs.BLESSING, metric="mrr", z=3.0, push_unblessed=True)
    p = pp.create_pipeline(
        "t", str(tmp_path / "tfx"), str(tmp_path / "m"), inputs, configs.RunConfig(blessing=blessing)
    )
    by_id = {c.id: c for c in p.components}
    evaluator, pusher_c = by_id["PinSageEvaluator"], by_id["PinSagePusher"]
    channel = pusher_c.inputs["model_blessing"]
    assert channel is evaluator.outputs["blessing"] and channel.type_name == "ModelBlessing"
    assert evaluator in pusher_c.upstream_nodes
    assert (evaluator.exec_properties["blessing_metric"], evaluator.exec_properties["blessing_z"]) == ("mrr", 3.0)
    assert pusher_c.exec_properties["push_unblessed"] == 1
    tower = pusher_c.inputs["context_tower"]  # the version carries `recommend`
    assert tower is by_id["ContextTowerTrainer"].outputs["context_tower"] and tower.type_name == "Model"
    p = pp.create_pipeline(
        "t", str(tmp_path / "tfx"), str(tmp_path / "m"), inputs, configs.RunConfig(history=configs.HistoryConfig(False))
    )
    assert "context_tower" not in {c.id: c for c in p.components}["PinSagePusher"].inputs
    p = pp.create_pipeline("t", str(tmp_path / "tfx"), str(tmp_path / "m"), inputs, configs.RunConfig())
    assert {c.id: c for c in p.components}["PinSagePusher"].exec_properties["push_unblessed"] == 0
    p = pp.create_pipeline(
        "t", str(tmp_path / "tfx"), str(tmp_path / "m"), inputs, configs.RunConfig(stop_after="evaluation")
    )
    ids = {c.id for c in p.components}
    assert "PinSageEvaluator" in ids and "PinSagePusher" not in ids


def test_the_context_tower_options_reach_the_run_config_from_flags_and_environment():
    """--context-tower-hparams / --no-context-tower, and PINSAGE_CONTEXT_TOWER_HPARAMS / PINSAGE_NO_CONTEXT_TOWER
    for the TFX CLI runner, give the same RunConfig; a bad key or value is a ValueError naming it."""
    overrides = '{"form": "set", "epochs": 3}'
    args = parse("run", "--dataset", "ml-100k", "--output", "o", "--context-tower-hparams", overrides)
    config = run_options.run_config(args)
    assert config.context_tower == {"form": "set", "epochs": 3} and config.history.enabled
    env = {"PINSAGE_DATASET": "ml-100k", "PINSAGE_CONTEXT_TOWER_HPARAMS": overrides}
    assert run_options.run_config_from_env(env) == config
    off = run_options.run_config_from_env(dict(env, PINSAGE_NO_CONTEXT_TOWER="1"))
    assert not off.history.enabled and off == dataclasses.replace(config, history=configs.HistoryConfig(enabled=False))
    assert configs.RunConfig().context_tower == {} and configs.RunConfig().history == configs.HISTORY
    with pytest.raises(ValueError, match=r"--context-tower-hparams: unknown .*\['bogus'\]"):
        run_options.run_config_from_env({"PINSAGE_CONTEXT_TOWER_HPARAMS": '{"bogus": 1}'})
    with pytest.raises(ValueError, match="--context-tower-hparams: form must be one of"):
        configs.RunConfig(context_tower={"form": "tree"})
    with pytest.raises(ValueError, match="--context-tower-hparams must be a JSON object"):
        run_options.run_config(parse("run", "--dataset", "ml-100k", "--output", "o", "--context-tower-hparams", "[1]"))


def test_the_context_tower_stage_is_wired_between_the_trainer_and_the_evaluator(tmp_path):
    from pipeline import pipeline as pp

    inputs = pp.PipelineInputs(str(tmp_path), "i.pbtxt", "x.pbtxt", "r.json", {}, "g.pbtxt", "d")
    config = configs.RunConfig(context_tower={"form": "set"}, stop_after="evaluation")
    by_id = {
        c.id: c for c in pp.create_pipeline("t", str(tmp_path / "tfx"), str(tmp_path / "m"), inputs, config).components
    }
    tower, evaluator, trainer = by_id["ContextTowerTrainer"], by_id["PinSageEvaluator"], by_id["PinSageTrainer"]
    assert tower.inputs["model"] is trainer.outputs["model"] and trainer in tower.upstream_nodes
    assert evaluator.inputs["context_tower"] is tower.outputs["context_tower"]
    assert tower.exec_properties["config"] == '{"form": "set"}'
    assert tower.exec_properties["probe_contexts"] == configs.HISTORY.probe_contexts
    off = dataclasses.replace(config, history=configs.HistoryConfig(enabled=False))
    ids = {c.id for c in pp.create_pipeline("t", str(tmp_path / "tfx"), str(tmp_path / "m"), inputs, off).components}
    assert "ContextTowerTrainer" not in ids and "PinSageEvaluator" in ids
    early = dataclasses.replace(config, stop_after="sampling")
    ids = {c.id for c in pp.create_pipeline("t", str(tmp_path / "tfx"), str(tmp_path / "m"), inputs, early).components}
    assert "ContextTowerTrainer" not in ids and "PinSageTrainer" not in ids
