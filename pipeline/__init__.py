"""PinSage on TFX. TF-GNN and TFRS need Keras 2: select tf-keras before anything imports TensorFlow.

OpenBLAS (numpy's wheel, 0.3.23) reads the CPU model to pick its kernels; on VMs whose CPUID names a generic
"Intel Xeon Processor" it falls back to Prescott (SSE3) kernels: float32 [64, 128] x [128, 1M] took 0.61 s instead
of 0.17 s with the AVX-512 ones on the CI box (BUILD_NOTES.md). So, unless the user chose already, name the
kernel family from the instruction sets the kernel reports (only ones the CPU has: never an illegal instruction).
Effective when this package is imported before numpy (the `pinsage` CLI, TFX executors, Beam workers inherit it).
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
