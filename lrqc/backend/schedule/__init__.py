"""lrqc.backend.schedule."""
