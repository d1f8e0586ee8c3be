"""Benchmarks. Run `python -m bench [NAME ...]`; see bench/__main__.py."""
