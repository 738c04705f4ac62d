"""PinSageTrainer (custom TFX component): the stock Trainer's contract — a user `run_fn(fn_args)` — with the
extra inputs PinSage needs.

The stock `tfx.components.Trainer` accepts only Examples / TransformGraph / Schema / base model inputs; PinSage
also trains on the graph, the importance neighbourhoods and the training pairs. This executor builds TFX's own
`FnArgs` (train_files = the Transform-ed item examples, transform_graph_path, serving_model_dir, model_run_dir)
and puts the other artifacts' URIs in `custom_config`, then calls the run_fn (default `modules.trainer.run_fn`)
exactly as the stock Trainer calls a module file.

`code_fingerprint` (sha256 of every source file of this repository that the run_fn's module imports, directly or
not: modules/ and schema/ today; computed when the pipeline is built) is an exec property, so that a change to any
code the trainer runs invalidates the TFX cache for this stage and everything after it.

Resumable training: a killed execution's output directory is never looked at again (the re-run is a new
execution with new output URIs), so checkpoints go to `<pipeline root>/PinSageTrainer/.checkpoints/<key>/`
instead (`checkpoint_dir` in custom_config), with key = `checkpoint_key` of the input artifacts' URIs and the exec
properties (hparams, code fingerprint, ...): exactly what TFX's cache keys on, so a re-run that would not be a
cache hit only because the last try never completed finds that try's checkpoints, and anything else that changed
starts afresh. The directory goes once the run_fn has returned; the step training resumed at becomes the Model
artifact's `resumed_from_step` custom property in MLMD.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os

from tfx import types
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

from modules.model import ABLATIONS
from modules.trainer import HISTORY_FILE
from pipeline.components import artifacts

DEFAULT_RUN_FN = "modules.trainer.run_fn"
CHECKPOINTS_DIR = ".checkpoints"  # under the component's directory of the pipeline root
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module_file(root: str, name: str) -> str | None:
    base = os.path.join(root, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _imported_modules(path: str, package: str) -> set[str]:
    """Every module an import statement in `path` names (function-level ones included), relative ones resolved."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def code_files(module: str, root: str = REPO_ROOT) -> list[str]:
    """The repository's source files that `module` runs: its own file and, transitively, every module of this
    repository it imports (and their packages' __init__ files), by parsing the import statements."""
    todo, seen = [module], {}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # the packages on the way: their __init__ runs too
            sub = ".".join(parts[:k])
            if sub in seen:
                continue
            path = _module_file(root, sub)
            seen[sub] = path
            if path is not None:
                pkg = sub if path.endswith("__init__.py") else sub.rpartition(".")[0]
                todo.extend(_imported_modules(path, pkg))
    return sorted(p for p in seen.values() if p)


def code_fingerprint(module: str = DEFAULT_RUN_FN.rpartition(".")[0], root: str = REPO_ROOT) -> str:
    """sha256 over the files code_files(module) finds (their paths relative to root and their bytes)."""
    h = hashlib.sha256()
    for path in code_files(module, root):
        with open(path, "rb") as f:
            h.update(os.path.relpath(path, root).encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


def checkpoint_key(input_dict: dict, exec_properties: dict) -> str:
    """sha256 of the input artifacts' URIs (by input name) and of the exec properties: TFX's cache key, which a
    killed try and its re-run share (the same upstream artifacts, cached or not, and the same properties)."""
    uris = {k: sorted(a.uri for a in v) for k, v in sorted(input_dict.items())}
    props = {k: v for k, v in sorted(exec_properties.items())}
    blob = json.dumps({"inputs": uris, "exec_properties": props}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class PinSageTrainerSpec(ComponentSpec):
    PARAMETERS = {
        "run_fn": ExecutionParameter(type=str),
        "hparams": ExecutionParameter(type=str),  # JSON of modules.model.PinSageHParams overrides
        "graph_schema": ExecutionParameter(type=str),  # path of the TF-GNN GraphSchema .pbtxt
        "code_fingerprint": ExecutionParameter(type=str),
        "ablations": ExecutionParameter(type=str, optional=True),  # JSON list of modules.model.ABLATIONS names
        "eval_contexts": ExecutionParameter(type=int, optional=True),  # per-epoch validation sample (0: all)
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),  # Transform-ed item features
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        "graph": ChannelParameter(type=artifacts.PinSageGraph),
        "neighborhoods": ChannelParameter(type=artifacts.Neighborhoods),
        "pairs": ChannelParameter(type=artifacts.TrainingPairs),
    }
    OUTPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun),
    }


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        split = artifact_utils.decode_split_names(examples.split_names)[0]
        model_uri = artifact_utils.get_single_uri(output_dict["model"])
        # <pipeline root>/<component id>/model/<execution id>
        component_dir = os.path.dirname(os.path.dirname(model_uri.rstrip("/")))
        checkpoint_dir = os.path.join(component_dir, CHECKPOINTS_DIR, checkpoint_key(input_dict, exec_properties))
        fn_args = FnArgs(
            working_dir=model_uri,
            train_files=[artifact_utils.get_split_uri([examples], split)],
            eval_files=[],
            transform_graph_path=artifact_utils.get_single_uri(input_dict["transform_graph"]),
            serving_model_dir=path_utils.serving_model_dir(model_uri),
            model_run_dir=artifact_utils.get_single_uri(output_dict["model_run"]),
            custom_config={
                "graph_uri": artifact_utils.get_single_uri(input_dict["graph"]),
                "neighborhoods_uri": artifact_utils.get_single_uri(input_dict["neighborhoods"]),
                "pairs_uri": artifact_utils.get_single_uri(input_dict["pairs"]),
                "graph_schema": exec_properties["graph_schema"],
                "hparams": json.loads(exec_properties["hparams"] or "{}"),
                "ablations": json.loads(exec_properties.get("ablations") or "[]"),
                "eval_contexts": int(exec_properties.get("eval_contexts") or 0),
                "checkpoint_dir": checkpoint_dir,
            },
        )
        module, fn = exec_properties["run_fn"].rsplit(".", 1)
        getattr(importlib.import_module(module), fn)(fn_args)
        _record_resume(artifact_utils.get_single_instance(output_dict["model"]))
        if fileio.exists(checkpoint_dir):  # trained and saved: nothing left to resume
            fileio.rmtree(checkpoint_dir)


def _record_resume(model) -> None:
    """The global step training resumed at (0: from scratch) as the Model's `resumed_from_step` property, from the
    history the run_fn wrote (absent for a run_fn that writes none)."""
    path = os.path.join(model.uri, HISTORY_FILE)
    if fileio.exists(path):
        with fileio.open(path) as f:
            model.set_int_custom_property("resumed_from_step", int(json.load(f).get("resumed_from_step", 0)))


class PinSageTrainer(base_component.BaseComponent):
    """Trains PinSage; outputs a Model (SavedModel + embeddings.npy + history.json) and a ModelRun (TensorBoard)."""

    SPEC_CLASS = PinSageTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        examples,
        transform_graph,
        graph,
        neighborhoods,
        pairs,
        graph_schema: str,
        hparams: dict | None = None,
        run_fn: str = DEFAULT_RUN_FN,
        code_fingerprint: str = "",
        ablations: list[str] | None = None,
        eval_contexts: int = 0,
    ):

        unknown = sorted(set(ablations or ()) - set(ABLATIONS))
        if unknown:
            raise ValueError(f"unknown ablations {unknown}; known: {sorted(ABLATIONS)}")
        super().__init__(
            spec=PinSageTrainerSpec(
                ablations=json.dumps(list(ablations or [])),
                eval_contexts=int(eval_contexts or 0),
                examples=examples,
                transform_graph=transform_graph,
                graph=graph,
                neighborhoods=neighborhoods,
                pairs=pairs,
                run_fn=run_fn,
                hparams=json.dumps(hparams or {}, sort_keys=True),
                graph_schema=graph_schema,
                code_fingerprint=code_fingerprint,
                model=types.Channel(type=standard_artifacts.Model),
                model_run=types.Channel(type=standard_artifacts.ModelRun),
            )
        )
