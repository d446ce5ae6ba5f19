"""lrqc.backend.te."""
