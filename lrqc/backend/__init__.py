"""Code generation through Apache TVM: the only package of lrqc that imports tvm (through
compat.py). Its subpackages: te/ (the algorithm as tensor expressions), schedule/ (schedule
rules and tile helpers), intrin/ (x86 and CUDA tensor intrinsics), cuda/ (CUDA schedules and
the nvcc toolchain)."""
