"""CUDA code generation: the GEMM schedules of the CUDA rules (dp4a.py, wmma.py), how each
function of a kernel is scheduled (schedules.py: the rule, per-block, or TVM's dlight rules),
nvcc and PTX (toolchain.py), and fatbins on the load side (fatbin.py)."""
