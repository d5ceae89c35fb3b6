"""Benchmarks: how long each stage of the course takes, against the tutorials' way, in the same run.

Run `python -m bench` (or `python bench/run.py`); `--quick` finishes in a few minutes. See bench/README.md.
"""
