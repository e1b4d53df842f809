"""Fuzz campaigns over the guests' agent, ABI and MCP channels (``vmm_suites.fuzz``)."""
