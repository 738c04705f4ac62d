"""One source of every default: the CLI, the components and the library functions take theirs from
pipeline/configs.py (and serving/flags.py), so wiring a component directly gives the same model as `pinsage run`."""

import inspect

from pipeline import cli, configs
from pipeline.components.bulk_embedder import BulkEmbedder
from pipeline.components.neighborhood_sampler import NeighborhoodSampler
from pipeline.components.pair_gen import PairGen
from pipeline.components.pusher import PinSagePusher
from pipeline.push import pusher
from pipeline.sampling import ppr, random_walks, transitions


def parse(*argv):
    p = cli.build_parser()
    return p.parse_args(list(argv))


def defaults(fn) -> dict:
    return {k: v.default for k, v in inspect.signature(fn).parameters.items() if v.default is not inspect._empty}


def test_run_flags_default_to_the_sampling_config():
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
    assert cli._run_options(args)["sampling"] == s  # nothing the CLI passes differs from the config


def test_components_default_to_the_configs():
    s, p = configs.SAMPLING, configs.PAIRS
    d = defaults(NeighborhoodSampler.__init__)
    assert (d["num_walks"], d["walk_length"], d["restart_prob"], d["top_t"], d["seed"]) == (
        s.num_walks,
        s.walk_length,
        s.restart_prob,
        s.top_t,
        s.seed,
    )
    assert (d["strategy"], d["source"], d["window"], d["shard_size"]) == (
        s.strategy,
        s.neighborhood_source,
        s.pair_window,
        s.shard_size,
    )
    assert (d["probe_contexts"], d["beam_min_interactions"]) == (s.probe_contexts, s.beam_min_interactions)
    assert s.neighborhood_source == "auto" and set(configs.PROBE_CANDIDATES) <= set(configs.NEIGHBORHOOD_SOURCES)
    d = defaults(PairGen.__init__)
    assert d["window"] == s.pair_window
    assert {k: d[k] for k in vars(p)} == vars(p)  # every PairConfig field, same name, same value
    assert defaults(BulkEmbedder.__init__)["batch_size"] == configs.EMBED.batch_size
    d = defaults(PinSagePusher.__init__)
    assert (d["model_name"], d["keep"]) == (configs.PUSH.model_name, configs.PUSH.keep)
    assert defaults(pusher.push)["keep"] == configs.PUSH.keep


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


def test_run_passes_the_shuffle_order():
    assert cli._run_options(parse("run", "--dataset", "ml-1m", "--output", "o"))["shuffle_seed"] is None
    args = parse("run", "--dataset", "ml-1m", "--shuffle-order", "3", "--output", "o")
    assert cli._run_options(args)["shuffle_seed"] == 3
    assert parse("run", "--dataset", "ml-1m-unordered", "--output", "o").dataset == "ml-1m-unordered"
