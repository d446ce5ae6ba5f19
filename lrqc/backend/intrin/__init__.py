"""lrqc.backend.intrin."""
