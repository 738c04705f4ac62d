"""Resilience of `pinsage run` (TFX LocalDagRunner, MLMD in <out>/metadata.sqlite, caching on).

- A run killed (SIGKILL to its process group) while the trainer trains, then started again, reuses every stage
  that completed before the kill from the TFX cache and executes the trainer and everything after it; the new
  trainer execution resumes training at the killed one's last checkpoint.
- A rerun with changed data re-executes exactly the stages downstream of the change in the pipeline's DAG
  (pipeline/pipeline.py) and takes the others from the cache.

Both read what happened from MLMD (ml_metadata's store API), per pipeline run; the expected sets come from the
DAG of the built pipeline (upstream/downstream nodes), not from a hard-coded list. The data is a small synthetic
dataset (pipeline/data/datasets.py) and the training budget is a few steps.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline import driver
from pipeline.components.trainer import CHECKPOINTS_DIR
from pipeline.configs import RunConfig
from pipeline.data import datasets, ingest
from tests.fixtures import REPO_ROOT

REPO = REPO_ROOT
STEPS_PER_EPOCH, EPOCHS, CHECKPOINT_STEPS = 10, 2, 3
HPARAMS = (
    f'{{"epochs": {EPOCHS}, "steps_per_epoch": {STEPS_PER_EPOCH}, "batch_size": 64, "num_negatives": 50, '
    '"hidden_dim": 16, "output_dim": 8, "text_embedding_dim": 4, "warmup_steps": 2, '
    f'"checkpoint_steps": {CHECKPOINT_STEPS}}}'
)
TRAINER = "PinSageTrainer"


def mlmd_runs(output: str):
    """([(run context name, {component id: (execution, state name)})] for every pipeline run, oldest first;
    the store)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = os.path.join(output, "metadata.sqlite")
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    state = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
    node_type = store.get_context_type("node").id
    runs = []
    for run in sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: (c.create_time_since_epoch, c.id)):
        got = {}
        for e in store.get_executions_by_context(run.id):
            (node,) = [c.name for c in store.get_contexts_by_execution(e.id) if c.type_id == node_type]
            got[node.split(".", 1)[1]] = (e, state[e.last_known_state])  # '<pipeline>.<component id>'
        runs.append((run.name, got))
    return runs, store


def artifact_ids(store, execution, event_type) -> set:
    return {ev.artifact_id for ev in store.get_events_by_execution_ids([execution.id]) if ev.type == event_type}


def dag(output: str, data_dir: str, stop_after=None) -> dict:
    """{component id: set of all its downstream component ids} of the pipeline `pinsage run` builds."""
    pipeline, _ = driver.build(output, RunConfig(data_dir=data_dir, stop_after=stop_after))

    def below(c, seen):
        for d in c.downstream_nodes:
            if d.id not in seen:
                seen.add(d.id)
                below(d, seen)
        return seen

    return {c.id: below(c, set()) for c in pipeline.components}


def cli(data_dir: str, output: str) -> list:
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        "--data-dir",
        data_dir,
        "--output",
        output,
        "--hparams",
        HPARAMS,
        "--push-unblessed",  # a few training steps need not beat the baselines; the resume path ends in a push
    ]


def tail(path: str, n: int = 4000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-n:]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("synthetic"))
    datasets.materialise("synthetic", d, items=300, contexts=150, edges=3000, seed=1)
    return d


def checkpoint_state(out: str):
    """(the trainer's checkpoint dirs, the global step of the latest checkpoint of the model or None)."""
    import tensorflow as tf

    dirs = glob.glob(os.path.join(out, "tfx", TRAINER, CHECKPOINTS_DIR, "*"))
    state = [tf.train.get_checkpoint_state(os.path.join(d, "main", "checkpoints")) for d in dirs]
    steps = [int(s.model_checkpoint_path.rsplit("-", 1)[1]) for s in state if s is not None]
    return dirs, max(steps) if steps else None


@pytest.fixture(scope="module")
def killed_and_rerun(data, tmp_path_factory):
    """Runs `pinsage run`, SIGKILLs its process group once the trainer has written its first checkpoint (the
    CheckpointManager's index file: written last, after the checkpoint's data), then runs it again to the end.
    Returns (output dir, MLMD runs after the kill, the latest checkpoint's step at the kill, the rerun's log)."""
    out = str(tmp_path_factory.mktemp("resume") / "out")
    log = out + "-kill.log"
    os.makedirs(out)
    with open(log, "w") as f:
        proc = subprocess.Popen(cli(data, out), cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    started = os.path.join(out, "tfx", TRAINER, CHECKPOINTS_DIR, "*", "main", "checkpoints", "checkpoint")
    deadline = time.time() + 900
    try:
        while not glob.glob(started):
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before the trainer was seen training:\n" + tail(log))
            if time.time() > deadline:
                pytest.fail("the trainer did not start within 15 min:\n" + tail(log))
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    after_kill, _ = mlmd_runs(out)
    _, step = checkpoint_state(out)
    t0 = time.time()
    rerun = subprocess.run(cli(data, out), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    print(f"killed at checkpoint step {step}; rerun {time.time() - t0:.1f} s")
    return out, after_kill, step, rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_a_run_killed_in_training_resumes_from_the_cache(killed_and_rerun, data):
    out, after_kill, _, stdout = killed_and_rerun
    assert len(after_kill) == 1
    killed = after_kill[0][1]
    assert killed[TRAINER][1] == "RUNNING", f"the kill did not land in the trainer: {killed[TRAINER][1]}"
    down = dag(out, data)
    upstream = {c for c, below in down.items() if TRAINER in below}
    done = {c for c, (_, s) in killed.items() if s == "COMPLETE"}
    assert upstream and upstream <= done  # the whole prefix had completed ...
    assert not done & down[TRAINER]  # ... and nothing after the trainer had started
    assert set(killed) == done | {TRAINER}

    runs, store = mlmd_runs(out)
    assert len(runs) == 2 and runs[0][0] == after_kill[0][0]
    assert runs[0][1][TRAINER][1] == "RUNNING"  # the killed execution stays as it was ...
    rerun = runs[1][1]
    assert set(rerun) == set(down)  # every stage of the pipeline ran or was reused
    assert {c for c, (_, s) in rerun.items() if s == "CACHED"} == done
    assert {c for c, (_, s) in rerun.items() if s == "COMPLETE"} == set(down) - done
    assert {TRAINER, "BulkEmbedder", "PinSagePusher"} <= set(down) - done

    from ml_metadata.proto import metadata_store_pb2

    out_ev, in_ev = metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INPUT
    before = set().union(*(artifact_ids(store, e, out_ev) for e, _ in killed.values()))
    # the cached stages hand the killed run's artifacts on: the new trainer reads exactly those ...
    assert artifact_ids(store, rerun[TRAINER][0], in_ev) <= before
    for c in done:
        assert artifact_ids(store, rerun[c][0], out_ev) == artifact_ids(store, killed[c][0], out_ev)
    # ... and what follows reads the new trainer's model, not the killed one's partial output
    new_model = artifact_ids(store, rerun[TRAINER][0], out_ev)
    assert not new_model & artifact_ids(store, killed[TRAINER][0], out_ev)
    assert new_model & artifact_ids(store, rerun["BulkEmbedder"][0], in_ev)
    assert os.path.exists(os.path.join(out, "serving_model", "pinsage", "1", "saved_model.pb"))
    assert "ended after PinSagePusher" in stdout


@pytest.mark.slow
def test_a_run_killed_in_training_resumes_training_at_its_last_checkpoint(killed_and_rerun):
    """The kill came after the first checkpoint and before the last step; the rerun's trainer (a new execution)
    resumed at the killed one's latest checkpoint: its log says so, and MLMD's Model artifact and history.json
    record that step; its checkpoints are removed once it completed."""
    out, _, step, log = killed_and_rerun
    total = EPOCHS * STEPS_PER_EPOCH
    assert step is not None and CHECKPOINT_STEPS <= step < total, step
    epoch, in_epoch = divmod(step, STEPS_PER_EPOCH)
    pattern = rf"resuming from \S+ckpt-{step} at step {step} \(epoch {epoch + 1}/{EPOCHS}, step {in_epoch}/"
    assert re.search(pattern, log), log[-3000:]
    for e in range(epoch + 1, EPOCHS + 1):  # every epoch from the resumed one on trained to its end ...
        assert f"train epoch {e}/{EPOCHS} step {STEPS_PER_EPOCH}/{STEPS_PER_EPOCH}" in log
    assert f"train epoch {epoch}/{EPOCHS}" not in log or epoch == 0  # ... the ones before it did not

    runs, store = mlmd_runs(out)
    from ml_metadata.proto import metadata_store_pb2

    (model_id,) = artifact_ids(store, runs[1][1][TRAINER][0], metadata_store_pb2.Event.OUTPUT) & {
        a.id for a in store.get_artifacts_by_type("Model")
    }
    (model,) = store.get_artifacts_by_id([model_id])
    assert model.custom_properties["resumed_from_step"].int_value == step
    with open(os.path.join(model.uri, "history.json")) as f:
        history = json.load(f)
    assert history["resumed_from_step"] == step and history["epoch"] == list(range(1, EPOCHS + 1))
    assert checkpoint_state(out) == ([], None)  # the completed trainer left no checkpoints behind


def _edit(src: str, dst: str, table: str, fn):
    shutil.copytree(src, dst)
    path = os.path.join(dst, f"{table}.csv")
    with open(path) as f:
        lines = f.read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(fn(lines)) + "\n")
    return dst


def _reexecuted(out: str, data_dir: str, stop_after: str) -> tuple[dict, dict]:
    """Runs the pipeline prefix in-process; returns ({component: state} of that run, DAG)."""
    pipeline, _ = driver.build(out, RunConfig(data_dir=data_dir, stop_after=stop_after))
    driver.run_local(pipeline)
    runs, _ = mlmd_runs(out)
    return {c: s for c, (_, s) in runs[-1][1].items()}, dag(out, data_dir, stop_after)


@pytest.mark.slow
def test_changed_data_reruns_exactly_the_stages_downstream_of_it(killed_and_rerun, data, tmp_path):
    out = killed_and_rerun[0]
    # One interaction added (a later one for context 0, an existing item): the interactions branch and everything
    # from GraphGen on re-execute (GraphGen joins both tables; Transform's log-degree comes from the graph); the
    # items branch and the imported schemas come from the cache.
    more = _edit(data, str(tmp_path / "more"), "interactions", lambda ls: ls + ["0,1,1999999999,1"])
    states, down = _reexecuted(out, more, "sampling")
    changed = {"interactions_example_gen"} | down["interactions_example_gen"]
    assert {"GraphGen", "Transform", "NeighborhoodSampler", "PairGen"} <= changed
    assert {c for c, s in states.items() if s == "COMPLETE"} == changed
    assert {c for c, s in states.items() if s == "CACHED"} == set(down) - changed
    assert {"items_example_gen", "items_statistics_gen", "items_validator"} <= set(down) - changed

    # Then one item's feature changed (a price), interactions as in the run above: now the items branch and
    # GraphGen re-execute and the interactions branch is cached.
    priced = _edit(more, str(tmp_path / "priced"), "items", lambda ls: [ls[0], _bump_price(ls[1])] + ls[2:])
    states, down = _reexecuted(out, priced, "graph")
    changed = {"items_example_gen"} | down["items_example_gen"]
    assert "GraphGen" in changed and "interactions_example_gen" not in changed
    assert {c for c, s in states.items() if s == "COMPLETE"} == changed
    assert {c for c, s in states.items() if s == "CACHED"} == set(down) - changed


def _bump_price(line: str) -> str:
    """items.csv columns: item_id, category, price, ... (datasets._synthetic_tables)."""
    cols = line.split(",")
    cols[2] = repr(float(cols[2]) + 1.0)
    return ",".join(cols)


def test_inputs_are_addressed_by_their_own_content(tmp_path):
    """prepare_inputs gives each canonical table and schema file a path that changes exactly with its content:
    the paths are the ExampleGen / ImportSchemaGen exec properties TFX's cache keys on."""
    d = str(tmp_path / "d")
    datasets.materialise("synthetic", d, items=50, contexts=20, edges=200, seed=3)
    out = str(tmp_path / "out")
    a, _ = driver.prepare_inputs(out, data_dir=d)
    assert driver.prepare_inputs(out, data_dir=d)[0] == a  # unchanged data: same paths
    items_only = _edit(d, str(tmp_path / "d2"), "items", lambda ls: [ls[0], _bump_price(ls[1])] + ls[2:])
    b, _ = driver.prepare_inputs(out, data_dir=items_only)
    assert b.table_dirs["interactions"] == a.table_dirs["interactions"]
    assert b.table_dirs["items"] != a.table_dirs["items"]
    assert (b.items_schema, b.interactions_schema, b.graph_schema) == (
        a.items_schema,
        a.interactions_schema,
        a.graph_schema,
    )
    for inputs in (a, b):  # each table dir holds that table's Parquet Examples, byte-identical
        for t in ("items", "interactions"):
            src = os.path.join(inputs.canonical_dir, ingest.EXAMPLES_DIR, t)
            want = sorted(os.path.relpath(p, src) for p in glob.glob(os.path.join(src, "*", "*.parquet")))
            got = sorted(
                os.path.relpath(p, inputs.table_dirs[t])
                for p in glob.glob(os.path.join(inputs.table_dirs[t], "*", "*.parquet"))
            )
            assert got == want and want
            for rel in want:
                with open(os.path.join(inputs.table_dirs[t], rel), "rb") as f, open(os.path.join(src, rel), "rb") as g:
                    assert f.read() == g.read()
    # a feature declared categorical instead of numeric: new items (and graph) schema paths, interactions kept
    yaml_path = os.path.join(items_only, "dataset.yaml")
    with open(yaml_path) as f:
        text = f.read()
    with open(yaml_path, "w") as f:
        f.write(text.replace("age_days: {kind: numeric}", "age_days: {kind: categorical}"))
    c, _ = driver.prepare_inputs(out, data_dir=items_only)
    assert c.items_schema != b.items_schema and c.graph_schema != b.graph_schema
    assert c.interactions_schema == b.interactions_schema
    assert c.table_dirs["interactions"] == b.table_dirs["interactions"]
    with open(c.items_schema) as f, open(b.items_schema) as g:
        assert f.read() != g.read()
