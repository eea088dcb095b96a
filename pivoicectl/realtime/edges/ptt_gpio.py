"""Push-to-talk from a GPIO button, through the RPi.GPIO API.

Calls `on_change(pressed)` on the event loop, only when the debounced state changes.
The RPi.GPIO API is imported lazily (an optional extra; on a Pi 5, rpi-lgpio provides
the same module), with the pin in BCM numbering, the internal pull-up (the button
connects the pin to ground, so pressed reads LOW), and edge callbacks. Contacts bounce
for a few milliseconds, so an edge only schedules a look at the pin `debounce_ms` later
and the level seen then is the state; unlike RPi.GPIO's own `bouncetime`, this never
swallows the release that follows a short press.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pivoicectl.core.setting_checks import check_fields, checked
from pivoicectl.errors import UserError

if TYPE_CHECKING:  # light to import: `run`'s settings take GpioSettings from here
    import asyncio

GPIO_INSTALL_HINT = (
    "pip install 'pivoicectl[gpio]' on a Pi 1-4; on a Pi 5, "
    "sudo apt install python3-rpi-lgpio (and a venv made with --system-site-packages)"
)
BCM_PINS = range(0, 28)


@dataclass(frozen=True)
class GpioSettings:
    """The button's pin and how long its contacts may bounce."""

    pin_bcm: int = checked(
        18, lo=BCM_PINS.start, hi=BCM_PINS.stop - 1, allowed="a BCM number from 0 to 27"
    )
    """BCM numbering: 18 is physical pin 12."""
    debounce_ms: int = checked(20, lo=0, hi=500)

    def __post_init__(self) -> None:
        check_fields(self)


def load_gpio() -> Any:
    """The RPi.GPIO module, or a one-line UserError saying how to install it."""
    try:
        return importlib.import_module("RPi.GPIO")
    except ImportError as exc:
        raise UserError("--ptt gpio needs the RPi.GPIO library", hint=GPIO_INSTALL_HINT) from exc
    except RuntimeError as exc:  # "This module can only be run on a Raspberry Pi!"
        raise UserError(f"cannot use GPIO here: {exc}", hint="use --ptt key") from exc


class GpioButton:
    """A button between a BCM pin and ground."""

    def __init__(self, settings: GpioSettings = GpioSettings(), gpio: Any = None) -> None:
        self.settings = settings
        self._gpio = gpio
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change: Callable[[bool], None] | None = None
        self._state = False
        self._started = False

    def start(self, loop: asyncio.AbstractEventLoop, on_change: Callable[[bool], None]) -> None:
        gpio = self._gpio if self._gpio is not None else load_gpio()
        self._gpio = gpio
        pin = self.settings.pin_bcm
        self._loop, self._on_change = loop, on_change
        try:
            gpio.setmode(gpio.BCM)
            gpio.setup(pin, gpio.IN, pull_up_down=gpio.PUD_UP)
            gpio.add_event_detect(pin, gpio.BOTH, callback=self._edge)
        except (RuntimeError, ValueError) as exc:
            with contextlib.suppress(Exception):
                gpio.cleanup(pin)
            raise UserError(
                f"cannot watch GPIO {pin}: {exc}",
                hint="check --gpio-pin (BCM numbering) and that you are in the gpio group",
            ) from exc
        self._started = True
        self._state = self._pressed()
        if self._state:
            on_change(True)

    def _pressed(self) -> bool:
        gpio = self._gpio
        return gpio.input(self.settings.pin_bcm) == gpio.LOW

    def _edge(self, channel: int) -> None:
        """GPIO's thread: look again once the contacts have settled (on the loop)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(
                loop.call_later, self.settings.debounce_ms / 1000, self._settled
            )

    def _settled(self) -> None:
        if not self._started or self._on_change is None:
            return
        state = self._pressed()
        if state != self._state:
            self._state = state
            self._on_change(state)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        gpio = self._gpio
        with contextlib.suppress(Exception):
            gpio.remove_event_detect(self.settings.pin_bcm)
            gpio.cleanup(self.settings.pin_bcm)
