"""HAL drivers (transports to a chip) behind one interface, chosen by name."""

from .base import Hal, HalError, available_hals, hal_class, open_hal, register_hal

__all__ = ["Hal", "HalError", "available_hals", "hal_class", "open_hal", "register_hal"]
