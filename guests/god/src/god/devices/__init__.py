"""Architecture-neutral devices and buses (see bus.py for the device contract)."""

from god.devices.bus import Bus, BusError, Device

__all__ = ["Bus", "BusError", "Device"]
