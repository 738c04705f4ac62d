"""Entry point for the TFX CLI:  tfx pipeline create --engine local --pipeline_path pipeline/local_runner.py
                                  tfx run create --engine local --pipeline_name pinsage

Builds the same pipeline as `pinsage run` (pipeline/driver.py). The TFX CLI hides argv from this file, so it is
configured by environment variables:
  PINSAGE_DATASET   bundled dataset (default ml-100k)   or   PINSAGE_DATA_DIR   a directory in the CSV contract
  PINSAGE_OUTPUT    where everything lands (default ./runs/tfx-cli)
  PINSAGE_STOP_AFTER  optional: 'graph' or 'transform' to build only a prefix of the pipeline
"""

import os
import sys

# Run as a script (the TFX CLI does), Python puts this file's folder first on sys.path, where our module names
# (datasets, ingest, cli, ...) would shadow installed packages: import the project as the `pipeline` package only.
# The entry is replaced in place, not removed, because the TFX CLI pops sys.path[0] after running this file.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.devnull if os.path.abspath(p or ".") == _here else p for p in sys.path]

from tfx import v1 as tfx  # noqa: E402  (after the sys.path fix above)

from pipeline import driver  # noqa: E402  (after the sys.path fix above)


def _pipeline():
    data_dir = os.environ.get("PINSAGE_DATA_DIR")
    dataset = None if data_dir else os.environ.get("PINSAGE_DATASET", "ml-100k")
    output = os.path.abspath(os.environ.get("PINSAGE_OUTPUT", os.path.join("runs", "tfx-cli")))
    pipeline, _ = driver.build(
        output, dataset=dataset, data_dir=data_dir, stop_after=os.environ.get("PINSAGE_STOP_AFTER") or None
    )
    return pipeline


if __name__ == "__main__":
    tfx.orchestration.LocalDagRunner().run(_pipeline())
