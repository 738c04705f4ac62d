"""PinSage's contracts: the artifacts every stage writes and reads, their names and layouts (numpy/pyarrow only).

This package is the bottom layer, imported (through its parent package) before anything else of the project, so
it is the one place that prepares the process:
- TF-GNN and TFRS need Keras 2: TF_USE_LEGACY_KERAS=1 must be set before TensorFlow is imported (the venv's .pth
  sets it for every interpreter; this covers an interpreter started without it).
- OpenBLAS (numpy's wheel, 0.3.23) reads the CPU model to pick its kernels; on VMs whose CPUID names a generic
  "Intel Xeon Processor" it falls back to Prescott (SSE3) kernels, several times slower. So,
  unless the user chose already, name the kernel family from the instruction sets the kernel reports (only ones
  the CPU has: never an illegal instruction). Effective when imported before numpy (the `pinsage` CLI, TFX
  executors and Beam workers import the project's packages first).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _openblas_coretype(cpuinfo: str = "/proc/cpuinfo"):
    try:
        with open(cpuinfo) as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return None
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        return "SkylakeX"
    if {"avx2", "fma"} <= set(flags):
        return "Haswell"
    return None


if "OPENBLAS_CORETYPE" not in os.environ:
    _core = _openblas_coretype()
    if _core:
        os.environ["OPENBLAS_CORETYPE"] = _core
