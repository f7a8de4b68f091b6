"""Checks that refuse or pin a run before any work: one run per environment and pinned loads
(``run_guard``), writable output folders with room (``preflight``)."""
