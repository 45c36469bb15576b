"""The handler of ``bench/bench_tasks.py``: waits 10 ms per event."""
