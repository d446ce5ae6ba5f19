"""Compilation: the ordered table of stages from a scheme to a compiled module (stages.py:
ir, plan, records, te, tir, build, and the text of each), compile() running it and returning
a kernel (compile.py), the functions of a plan and their schedules (functions.py), and
ahead-of-time artifacts (export.py)."""
