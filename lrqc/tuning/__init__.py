"""Auto-tuning records (no TVM): the tuning database in the user cache directory."""
