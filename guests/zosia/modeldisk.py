"""Model disks: an ext2 image holding GGUF files, made with ``mke2fs -d`` (no root, no loop).

Reproducible: the UUID, the directory hash seed and every timestamp are fixed
(``-U``, ``-E hash_seed=``, ``E2FSPROGS_FAKE_TIME``), and file owners are forced to 0:0
with ``debugfs`` afterwards (``mke2fs -d`` copies the builder's uid, which would make a
non-root build differ from a root one). So the same files give the same image bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

# Fixed, so two builds agree; derived from a name rather than random so it's explainable.
DISK_UUID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "zosia.model-disk.pytest-vmm"))
DEFAULT_EPOCH = 1763683200  # 2025-11-21T00:00:00Z; SOURCE_DATE_EPOCH overrides
LABEL = "zosia-models"


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))


def _tool(name: str) -> str:
    for cand in (shutil.which(name), f"/sbin/{name}", f"/usr/sbin/{name}"):
        if cand and os.path.exists(cand):
            return cand
    raise SystemExit(f"zosia: {name} not found: apt-get install e2fsprogs")


def make_disk(models: list[Path], out: Path, llama_args: list[str] | None = None,
              epoch: int | None = None, extra_mib: int = 4) -> Path:
    """Write an ext2 image at ``out`` with ``models`` at its root (+ ``zosia.args``).

    ``llama_args`` are extra llama.cpp arguments the guest's /init adds when it runs a model
    from this disk (one per line in zosia.args), e.g. ``["-n", "48"]``.
    """
    epoch = source_date_epoch() if epoch is None else epoch
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(epoch), "SOURCE_DATE_EPOCH": str(epoch)}
    with tempfile.TemporaryDirectory(prefix="zosia-disk-") as td:
        stage = Path(td) / "root"
        stage.mkdir()
        total = 0
        names: list[str] = []
        for m in models:
            if not m.is_file():
                raise SystemExit(f"zosia: model {m} is not a file")
            dst = stage / m.name
            try:
                os.link(m, dst)  # multi-GB models: don't copy twice
            except OSError:
                shutil.copyfile(m, dst)
            total += m.stat().st_size
            names.append(m.name)
        if llama_args:
            (stage / "zosia.args").write_text("".join(a + "\n" for a in llama_args))
            names.append("zosia.args")
        # Only the stage dir is ours to touch: the models are hard links to the user's files.
        os.chmod(stage, 0o755)  # mkdtemp's 0700 and the umask must not reach the image
        os.utime(stage, (epoch, epoch))
        # ext2 overhead with 4 KiB blocks is small; leave slack for metadata and lost+found.
        size_mib = (total * 105 // 100) // (1 << 20) + extra_mib
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_img = out.with_name(out.name + ".tmp")
        tmp_img.unlink(missing_ok=True)
        cmd = [_tool("mke2fs"), "-q", "-F", "-t", "ext2", "-b", "4096", "-m", "0",
               "-L", LABEL, "-U", DISK_UUID,
               "-E", f"hash_seed={DISK_UUID},root_owner=0:0",
               "-d", str(stage), str(tmp_img), f"{size_mib}M"]
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        # mke2fs -d copies owner, mode and times from the staged files (the builder's uid
        # and umask, the user's mtime, a ctime no one can set): pin them all, so only the
        # content matters.
        req = "".join(f"sif /{n} {field} {value}\n" for n in sorted(names)
                      for field, value in (("uid", 0), ("gid", 0), ("mode", "0100644"),
                                           ("atime", f"@{epoch}"),
                                           ("mtime", f"@{epoch}"), ("ctime", f"@{epoch}")))
        subprocess.run([_tool("debugfs"), "-w", "-f", "-", str(tmp_img)], input=req.encode(),
                       check=True, env=env, capture_output=True)
        tmp_img.replace(out)
    return out
