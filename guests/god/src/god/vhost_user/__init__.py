"""vhost-user back-end: god's virtio device models served to QEMU (see backend.py)."""
