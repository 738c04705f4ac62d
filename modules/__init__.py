"""The model layer: TF-GNN PinSage layers, training, layer-wise embedding, evaluation metrics, the ScaNN index
and the export. Imports schema/ only (tests/test_layers.py)."""

import schema  # noqa: F401  (first: prepares the process, see schema/__init__.py)
