"""The TF Serving-compatible server and client. Imports schema/ and modules/ only, never pipeline/ or TFX."""

import schema  # noqa: F401  (first: prepares the process, see schema/__init__.py)
