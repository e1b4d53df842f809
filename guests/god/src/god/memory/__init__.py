"""Guest RAM: regions backed by anonymous mmaps, bounds-checked guest-physical access."""

from god.memory.guest import GuestMemory, GuestMemoryError, Region

__all__ = ["GuestMemory", "GuestMemoryError", "Region"]
