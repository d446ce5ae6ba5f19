"""lrqc.backend.cuda."""
