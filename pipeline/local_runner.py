"""Entry point for the TFX CLI:  tfx pipeline create --engine local --pipeline_path pipeline/local_runner.py
                                  tfx run create --engine local --pipeline_name pinsage

Builds the same pipeline as `pinsage run` (pipeline/driver.py). The TFX CLI hides argv from this file, so it is
configured by environment variables, one per `pinsage run` option (pipeline/run_options.env_argv), checked the
same way:
  PINSAGE_DATASET   bundled dataset (default ml-100k)   or   PINSAGE_DATA_DIR   a directory in the CSV contract
  PINSAGE_OUTPUT    where everything lands (default ./runs/tfx-cli)
  PINSAGE_STOP_AFTER  optional: a stage of pipeline/configs.STAGES to build only a prefix of the pipeline
  PINSAGE_<FLAG>    any other `pinsage run --<flag>`, e.g. PINSAGE_HPARAMS='{"epochs": 2}', PINSAGE_TOP_T=20,
                    PINSAGE_NO_CACHE=1, PINSAGE_PUSH_UNBLESSED=1 (push a model the Evaluator did not bless),
                    PINSAGE_BEAM_ARG='--direct_num_workers=2' (space-separated options)
"""

import os
import sys

# Run as a script (the TFX CLI does), Python puts this file's folder first on sys.path, where our module names
# (datasets, ingest, cli, ...) would shadow installed packages: import the project as the `pipeline` package only.
# The entry is replaced in place, not removed, because the TFX CLI pops sys.path[0] after running this file.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.devnull if os.path.abspath(p or ".") == _here else p for p in sys.path]

from tfx import v1 as tfx  # noqa: E402  (after the sys.path fix above)

from pipeline import driver, run_options, scratch  # noqa: E402  (after the sys.path fix above)


def _pipeline(environ=os.environ):
    config = run_options.run_config_from_env(environ)  # a ValueError naming the option for a bad one
    output = os.path.abspath(environ.get("PINSAGE_OUTPUT") or os.path.join("runs", "tfx-cli"))
    pipeline, _ = driver.build(output, config)
    return pipeline


if __name__ == "__main__":
    with scratch.run_scratch():  # TFX's temporary files, removed after the run (pipeline/scratch.py)
        tfx.orchestration.LocalDagRunner().run(_pipeline())
