"""lrqc.pipeline."""
