"""lrqc.runtime."""
