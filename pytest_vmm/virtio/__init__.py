"""A host-side virtio 1.2 driver: virtio-mmio transport, split virtqueues, virtio-blk and
virtio-vsock requests, driven through any register/memory access (the guest agent's, or a
model's in unit tests). ``layout`` holds the spec's numbers, once."""
