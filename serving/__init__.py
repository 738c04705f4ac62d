"""PinSage on TFX. TF-GNN and TFRS need Keras 2: select tf-keras before anything imports TensorFlow."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
