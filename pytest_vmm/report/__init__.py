"""Results people act on: metrics as JSON lines, A/B verdicts, shard merging, the HTML report.

``python -m pytest_vmm.report ab|merge|html ...``; the plugin side is :mod:`.plugin`.
"""
