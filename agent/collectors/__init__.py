"""Host collectors, one per file, each run isolated (see base.py)."""
