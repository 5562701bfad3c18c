"""The campaign journal on SQLite: one file (WAL) that is the campaign (``store.py``), and what
is read from it without running it (``report.py``)."""
