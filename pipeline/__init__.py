"""The TFX pipeline: Beam stages by data flow (data/, graph/, sampling/, evaluation/, embedding/, push/), the
TFX components around them (components/), the wiring (pipeline.py), the defaults (configs.py), runners and CLI."""

import schema  # noqa: F401  (first: prepares the process, see schema/__init__.py)
