"""The fault-injecting server of the tests; it lives with the benchmarks (benchmarks/servers/fault_openai.py)."""

from benchmarks.servers.fault_openai import HTML_PAGE, FaultServer

__all__ = ["HTML_PAGE", "FaultServer"]
