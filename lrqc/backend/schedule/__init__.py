"""Scheduling: the ScheduleRule protocol (protocol.py), loading and choosing the rules of
schedules/<family>/ (rules.py), the x86 tile helpers the rules share (tiles.py), and replaying
a tuning record's trace (trace.py)."""
