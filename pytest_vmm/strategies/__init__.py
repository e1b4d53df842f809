"""Hypothesis strategies for conformance fuzzing (``pytest_vmm.strategies.mcp`` for MCP frames)."""
