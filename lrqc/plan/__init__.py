"""The kernel plan, the backend's IR (no TVM): lowered from the verified IR Program per M
bucket (lower.py), built and checked for exactness by support.py, verified (verify.py) and
printed (printer.py); M buckets (buckets.py), residual terms as K segments (segments.py), the
numpy layouts of packed operands (layout.py) and the block and function names shared by the
TE and the schedules (names.py)."""
