"""Benchmark of the SLCT runtime: ceilings, our runtime, and a DBOS peer, in one run.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python -m bench --db postgres           # or --db sqlite; --help for the rest

See docs/PERFORMANCE.md for what is measured and the figures of a real run.
"""
