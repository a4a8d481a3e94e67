"""pytest-benchmark micro benchmarks, run by `python -m bench` (not by `make test`)."""
