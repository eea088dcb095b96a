"""Push-to-talk sources: `--ptt gpio` (`ptt_gpio`) or `--ptt key` (`ptt_key`).

Both call `on_change(pressed)` on the event loop, only when the debounced state
changes; the client turns that into clear / commit / response.create.
"""

from __future__ import annotations

from pivoicectl.realtime.edges.ptt_gpio import GpioButton, GpioSettings
from pivoicectl.realtime.edges.ptt_key import KeyButton


def make_button(ptt: str, gpio_pin_bcm: int) -> GpioButton | KeyButton:
    """The talk button `--ptt` asks for (the settings checked `ptt` is a known mode)."""
    if ptt == "gpio":
        return GpioButton(GpioSettings(pin_bcm=gpio_pin_bcm))
    if ptt == "key":
        return KeyButton()
    raise ValueError(f"no push-to-talk button {ptt!r}")
