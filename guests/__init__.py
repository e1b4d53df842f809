"""The guest sources the shipped stacks build from; installed as the package
``pytest_vmm_guests`` and found with ``importlib.resources`` (pytest_vmm/stacks/_common.py),
so an installed pytest-vmm builds its guests without a checkout."""
