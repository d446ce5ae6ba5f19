"""lrqc.backend.te: the kernels' tensor expressions, one module per role, imported one way:
quantize.py (A's quantizer and the base quantize_a) and epilogue.py (dequantization and the
low-rank epilogue) depend on nothing here; gemm.py (the integer GEMM) uses epilogue.py;
sparse.py holds the sparse products (TIR); compensated.py (the compensated per-call passes)
uses quantize.py and sparse.py; floating.py (the float32 GEMM) uses quantize.py and
epilogue.py."""
