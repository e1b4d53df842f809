"""Hypervisors that ship with pytest-vmm (registered through the pytest_vmm.hypervisors entry point)."""
