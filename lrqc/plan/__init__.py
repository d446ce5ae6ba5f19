"""lrqc.plan."""
