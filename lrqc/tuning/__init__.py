"""Auto-tuning (lrqc tune): the tuning database (db, no TVM), the records builds use (records),
the MetaSchedule search (search, builder, progress, rpc), the checks and timing of candidates
(check), and tune_scheme driving them (tune). Imports nothing itself: MetaSchedule's builder
workers import lrqc.tuning.builder through it."""
