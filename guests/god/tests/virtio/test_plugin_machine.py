"""BootSpec.disks / BootSpec.vsock through the plugin's Machine on both hypervisors: god
(its own virtio-mmio devices) and QEMU (virtio-blk + our vhost-user back-end as a
Companion). Checks the guest sees the disk and the CID, the host reaches it with
pytest_vmm.vsock, and shutdown leaves no process or socket behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import vguest

from pytest_vmm import vsock as hv
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisors.god import hypervisor as god_hv
from pytest_vmm.hypervisors.qemu import hypervisor as qemu_hv
from pytest_vmm.machine import Machine, MachineConfig
from pytest_vmm.stack import BootSpec, Disk, VsockSpec


@pytest.fixture(scope="module")
def elf(tmp_path_factory) -> Path:
    if not vguest.have_toolchain():
        pytest.skip("gcc not installed")
    return vguest.build(tmp_path_factory.mktemp("vguest-m"))


@pytest.mark.parametrize("hv_obj", [god_hv, qemu_hv], ids=["god", "qemu"])
def test_machine_with_disk_and_vsock(elf, tmp_path, hv_obj):
    host = HostInfo.detect()
    why = hv_obj.problem(host) or hv_obj.accel_problem("kvm", host)
    if why:
        pytest.skip(why)
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(1 << 20))
    spec = BootSpec(kernel=elf, kernel_format="pvh", cmdline="blk_seed=3", mem_mib=32,
                    disks=[Disk(img)], vsock=VsockSpec(guest_cid=6), ready=rb"VGUEST READY",
                    boot_timeout_s=60)
    m = Machine(MachineConfig(target_id=f"vguest@{hv_obj.name}", stack="vguest",
                              hypervisor=hv_obj, spec=spec, accel="kvm", host=host,
                              artifacts_dir=tmp_path / "artifacts", boot_timeout_s=60))
    run_dir = m.run_dir
    try:
        m.start()
        text = m.console_text().decode(errors="replace")
        assert "VSOCK cid=6 " in text and " match " in text, text
        with hv.connect(run_dir / "vsock.sock", 1024, timeout=20) as s:
            blob = os.urandom(50000)
            s.sendall(blob)
            assert hv.recv_exact(s, len(blob)) == blob
    finally:
        m.shutdown()  # raises MachineLeak if a process or socket outlives it
    assert not run_dir.exists()
    shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)
