"""The shared conformance suites; installed as the package ``vmm_suites``.

Run them from anywhere with ``pytest --pyargs vmm_suites --vmm=STACK[@HYPERVISOR]``
(one suite: ``--pyargs vmm_suites.test_mmio``), or from a checkout with ``pytest suites/``.
"""
