"""One builder per command line: god's argv (host and lane), QEMU's base argv (guest and lane),
and what each launch plan says about its sockets and how to stop it."""

from __future__ import annotations

import signal
from pathlib import Path

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import LaunchPlan
from pytest_vmm.hypervisors import firecracker, god, lane, qemu
from pytest_vmm.stack import BootSpec, BuiltImage, Disk, VsockSpec

HOST = HostInfo("pvm", True, True, "", 2_000_000)


def spec(tmp_path: Path) -> BootSpec:
    for name in ("k.elf", "initrd.img", "model.img", "scratch.img"):
        (tmp_path / name).write_bytes(b"x")
    return BootSpec(kernel=tmp_path / "k.elf", initrd=tmp_path / "initrd.img", cmdline="a=1 b=2", mem_mib=96,
                    cpus=2, disks=[Disk(tmp_path / "model.img", read_only=True), Disk(tmp_path / "scratch.img")],
                    vsock=VsockSpec(guest_cid=7), hypervisor_args={"god": ["--extra"]})


def test_god_plan_carries_disks_vsock_socket_and_stop(tmp_path: Path) -> None:
    s = spec(tmp_path)
    plan = god.hypervisor.launch_plan(s, "kvm", tmp_path, HOST)
    argv = plan.argv
    assert argv[argv.index("run") + 1] == str(s.kernel)
    assert argv[argv.index("--initrd") + 1] == str(s.initrd)
    disks = [argv[i + 1] for i, a in enumerate(argv) if a == "--disk"]
    assert disks == [f"{tmp_path / 'model.img'},ro", str(tmp_path / "scratch.img")]
    assert plan.vsock_socket == tmp_path / "vsock.sock" and plan.sockets == [plan.vsock_socket]
    assert argv[argv.index("--vsock-uds") + 1] == str(plan.vsock_socket)
    assert argv[argv.index("--vsock-cid") + 1] == "7"
    assert argv[-1] == "--extra" and plan.stop == "sigterm"


def test_the_lane_runs_gods_own_argv_with_files_shipped_in(tmp_path: Path) -> None:
    s = spec(tmp_path)
    files: dict[str, Path] = {}
    inner = lane.hypervisor.god_argv(s, files)
    host_argv = god.god_run_argv(s, ["python3", "-u"], vsock_uds=lane.LANE_VSOCK_UDS)
    # Same words, with each host file replaced by its place in the lane's initramfs.
    placed = {"/" + lane_path: str(src) for lane_path, src in files.items()}
    def on_host(word: str) -> str:
        path, ro = (word[:-3], ",ro") if word.endswith(",ro") else (word, "")
        return placed.get(path, path) + ro

    # Nothing added: god's own split irqchip, as on the host.
    assert [on_host(w) for w in inner] == host_argv
    assert sorted(files.values()) == sorted([s.kernel, s.initrd, *(d.path for d in s.disks)])
    assert {"blk", "vsock"} <= lane.hypervisor.provides


def test_the_lane_carries_the_vsock_socket_out_through_the_lane_link(tmp_path: Path) -> None:
    """god's vsock socket inside the lane, the lane link's ends around it: its host end a
    companion that QEMU waits for, its lane end started before god, on the lane's ttyS1."""
    s = spec(tmp_path)
    (tmp_path / "vmlinux").write_bytes(b"")
    (tmp_path / "lane.cpio").write_bytes(b"")
    s.hypervisor_images["lane"] = BuiltImage("lane", tmp_path)
    plan = lane.hypervisor.launch_plan(s, "tcg", tmp_path, HOST)
    (link,) = plan.companions
    assert link.ready_path == tmp_path / lane.LINK_SOCKET
    assert plan.vsock_socket == tmp_path / "vsock.sock" and plan.vsock_socket in plan.sockets
    assert link.argv[link.argv.index("--listen") + 1] == str(plan.vsock_socket)
    assert f"socket,id=lanelink,path={link.ready_path}" in plan.argv
    assert "8250.nr_uarts=2" in plan.argv[plan.argv.index("-append") + 1]
    # god's stderr leaves the lane on the debugcon, to QEMU's stderr (the hypervisor log)
    assert f"isa-debugcon,iobase={lane.GOD_LOG_PORT:#x},chardev=godlog" in plan.argv
    assert "file,id=godlog,path=/dev/stderr,append=on" in plan.argv


def test_qemu_and_the_lane_share_the_base_argv(tmp_path: Path) -> None:
    s = spec(tmp_path)
    s.vsock = None
    guest = qemu.hypervisor.launch_plan(s, "tcg", tmp_path, HOST)
    (tmp_path / "vmlinux").write_bytes(b"x")
    image = BuiltImage("lane", tmp_path)
    lane_argv = lane.lane_qemu_argv(image, tmp_path / "initrd.img", "tcg", HOST, 512, 1, tmp_path / "qmp.sock")

    def options(argv: list[str]) -> set[str]:
        return {a for a in argv if a.startswith("-")}

    shared = {"-nodefaults", "-no-user-config", "-no-reboot", "-chardev", "-serial", "-monitor", "-qmp",
              "-device", "-kernel", "-initrd", "-append"}
    assert shared <= options(guest.argv) and shared <= options(lane_argv)
    assert guest.argv[guest.argv.index("-chardev") + 1] == lane_argv[lane_argv.index("-chardev") + 1]
    assert guest.control_socket == tmp_path / "qmp.sock" and guest.stop == "qmp"


class Signals:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def signal_leader(self, signum: int) -> None:
        self.sent.append(("leader", signum))

    def signal_group(self, signum: int) -> None:
        self.sent.append(("group", signum))


def test_request_stop_sees_only_signals_and_the_plan(tmp_path: Path) -> None:
    process = Signals()
    assert firecracker.hypervisor.request_stop(process, LaunchPlan(argv=["x"], stop="sigterm"))
    assert process.sent == [("leader", signal.SIGTERM)]
    # QMP socket gone: nothing sent, the machine escalates to signals itself.
    gone = LaunchPlan(argv=["x"], control_socket=tmp_path / "none.sock", stop="qmp")
    assert not qemu.hypervisor.request_stop(Signals(), gone)
