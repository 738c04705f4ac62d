"""The options the scale run (bench/scale.py) needs: the step budget, the evaluator's context sample and the
BulkEmbedder strategy, as `pinsage run` wires them into the pipeline; and that the step budget caps training."""

import json
import os

import numpy as np
import pytest

import schema
from pipeline import pipeline as pp
from pipeline import run_options
from pipeline.configs import RunConfig


def test_step_budget_hparams():
    assert run_options.step_budget_hparams({}, 300) == {"epochs": 1, "steps_per_epoch": 300}
    assert run_options.step_budget_hparams({"epochs": 3, "loss": "max_margin"}, 100) == {
        "epochs": 3,
        "steps_per_epoch": 33,
        "loss": "max_margin",
    }
    assert run_options.step_budget_hparams({"epochs": 5}, 2) == {"epochs": 2, "steps_per_epoch": 1}
    with pytest.raises(ValueError, match="step budget"):
        run_options.step_budget_hparams({}, 0)


def test_embed_strategy_follows_the_runner():
    assert pp.resolve_embed_strategy("auto", []) == "in_memory"
    assert pp.resolve_embed_strategy("auto", ["--direct_num_workers=2", "--runner=DirectRunner"]) == "in_memory"
    assert pp.resolve_embed_strategy("auto", ["--runner=DataflowRunner", "--project=p"]) == "beam"
    assert pp.resolve_embed_strategy("auto", ["--runner", "FlinkRunner"]) == "beam"
    assert pp.resolve_embed_strategy("beam", []) == "beam"


def test_run_options_reach_the_components(tmp_path):
    inputs = pp.PipelineInputs(
        canonical_dir=str(tmp_path),
        items_schema="i.pbtxt",
        interactions_schema="x.pbtxt",
        ingest_report="r.json",
        features={},
        graph_schema="g.pbtxt",
        dataset="d",
    )
    hp = run_options.step_budget_hparams({"epochs": 2}, 50)
    config = RunConfig(hparams=hp, eval_contexts=1234, beam_args=["--runner=DataflowRunner"])
    p = pp.create_pipeline("t", str(tmp_path / "tfx"), str(tmp_path / "m.sqlite"), inputs, config)
    by_id = {c.id: c for c in p.components}
    assert json.loads(by_id["PinSageTrainer"].exec_properties["hparams"]) == {"epochs": 2, "steps_per_epoch": 25}
    assert by_id["PinSageEvaluator"].exec_properties["max_contexts"] == 1234
    assert by_id["BulkEmbedder"].exec_properties["strategy"] == "beam"
    # the tables come in through Importers of ingest's Parquet Examples
    imp = by_id["interactions_example_gen"]
    assert imp.exec_properties["artifact_uri"] == os.path.join(str(tmp_path), "examples", "interactions")


def test_step_budget_caps_the_training_steps(tmp_path):
    import tensorflow as tf

    from modules.model import PinSageHParams
    from modules.train import train
    from tests.modules.test_model import community_graph

    feats, nbr, w, pairs = community_graph()
    q, p = pairs(2000)  # one natural epoch: 2000 // 32 = 62 steps
    hp = PinSageHParams.from_dict(
        dict(
            run_options.step_budget_hparams({}, 3),
            hidden_dim=8,
            output_dim=8,
            text_embedding_dim=4,
            batch_size=32,
            num_negatives=8,
            warmup_steps=1,
        )
    )
    _, history = train(feats, nbr, w, q, p, None, hp, str(tmp_path / "m"))
    reader = tf.train.load_checkpoint(str(tmp_path / "m" / "checkpoints"))
    keys = reader.get_variable_to_shape_map()
    iters = [reader.get_tensor(k) for k in keys if k.startswith("optimizer/") and "iter" in k.split("/")[1]]
    assert iters, sorted(keys)[:20]
    assert history["epoch"] == [1] and [int(i) for i in iters] == [3]
    assert np.isfinite(history["loss"]).all()


def test_openblas_kernels_follow_the_cpu_flags(tmp_path):
    """pipeline/__init__.py names OpenBLAS's kernel family only from instruction sets the CPU reports."""

    def core(flags):
        p = tmp_path / "cpuinfo"
        p.write_text(f"processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: {flags}\n\n")
        return schema._openblas_coretype(str(p))

    assert core("fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512dq") == "SkylakeX"
    assert core("fpu sse2 avx avx2 fma avx512f") == "Haswell"  # AVX-512 F alone is not SkylakeX's set
    assert core("fpu sse2 sse4_2 avx") is None
    assert schema._openblas_coretype(str(tmp_path / "missing")) is None
