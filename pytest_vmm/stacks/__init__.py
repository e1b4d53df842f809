"""The four stacks that ship in guests/, registered through the pytest_vmm.stacks entry point."""
