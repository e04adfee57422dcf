"""A relay (or any on/off output) on a GPIO pin, through gpiozero with an explicit pin factory.

The relay is driven to *off* (de-energised) when it is constructed and again when it is closed, so a
start, a restart or a crash never pulses the load on. `active_high=False` supports the common
optocoupled relay boards that energise on a low input.
"""

from __future__ import annotations

from gpiozero import OutputDevice


class Relay:
    def __init__(self, name: str, pin: int, *, active_high: bool, pin_factory):
        self.name = name
        self.pin = pin
        # initial_value=False makes gpiozero configure the pin as an output already at the
        # inactive level, with no glitch through the active level.
        self._device = OutputDevice(pin, active_high=active_high, initial_value=False,
                                    pin_factory=pin_factory)

    @property
    def energised(self) -> bool:
        return bool(self._device.value)

    def energise(self) -> None:
        self._device.on()

    def release(self) -> None:
        self._device.off()

    def close(self) -> None:
        try:
            self._device.off()
        finally:
            self._device.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
