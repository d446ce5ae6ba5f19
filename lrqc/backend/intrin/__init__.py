"""Tensor intrinsics the schedules tensorize to: x86 (VNNI vpdpbusd, AVX2 vpmaddwd on widened
bytes, and dp4a's CUDA form of the 64-byte block; x86.py) and CUDA tensor cores (WMMA; cuda.py)."""
