"""Waiting, at start, until the audio `run` needs is there.

At boot the assistant can start before the audio server answers, before WirePlumber has
made `source_ec` the default source (until then the default is the raw mic, echo and
all), or before a USB microphone is enumerated. Opening the mic in that moment either
fails or, worse, records without echo cancellation for the whole session. So `run`
first waits, bounded, with a line saying what it waits for; after the deadline it
stops with exit 1 and the service manager tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pivoicectl.core.echo_config import SOURCE_NAME
from pivoicectl.errors import UserError
from pivoicectl.system import paths, session_manager
from pivoicectl.system.audio_server import NOT_RUNNING_HINT, AudioServer

POLL_S = 0.25


@dataclass(frozen=True)
class AudioNeeds:
    input_device: str | None = None
    output_device: str | None = None
    echo_cancel: bool = False
    """setup installed echo cancellation: wait for source_ec and the session manager."""
    session_manager: bool = False
    """A stream goes to the server's default: wait for the session manager, which sets
    it (right after the server starts the default source is the raw mic, not source_ec)."""


def needs_for(input_device: str | None, output_device: str | None) -> AudioNeeds:
    """What to wait for: named devices, and source_ec when setup installed it and the
    default source is what `run` will record."""
    installed = paths.echo_cancel_conf().exists()
    return AudioNeeds(input_device, output_device, installed and input_device is None)


def missing(needs: AudioNeeds) -> str | None:
    """What is not there yet (a phrase for a status line), or None when all is."""
    try:
        with AudioServer.connect(timeout_s=1.0) as server:
            sources = {n.name for n in server.sources()}
            sinks = {n.name for n in server.sinks()}
    except UserError:
        return "the audio server"
    if needs.input_device and needs.input_device not in sources:
        return f"the microphone {needs.input_device}"
    if needs.output_device and needs.output_device not in sinks:
        return f"the speaker {needs.output_device}"
    if needs.echo_cancel and SOURCE_NAME not in sources:
        return f"the echo canceller ({SOURCE_NAME})"
    if (needs.echo_cancel or needs.session_manager) and not session_manager.ready():
        return "the session manager (WirePlumber)"
    return None


def wait_for_audio(
    needs: AudioNeeds,
    timeout_s: float,
    on_wait: Callable[[str], None],
    check: Callable[[AudioNeeds], str | None] = missing,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Return how long it waited once nothing is missing; tell `on_wait` each new thing
    it waits for; after `timeout_s` raise a UserError (exit 1) naming it."""
    start = clock()
    told = None
    while True:
        lacking = check(needs)
        if lacking is None:
            return clock() - start
        if lacking != told:
            on_wait(f"waiting for {lacking}")
            told = lacking
        if clock() - start >= timeout_s:
            hint = (
                NOT_RUNNING_HINT if lacking == "the audio server" else ("see `pivoicectl doctor`")
            )
            raise UserError(f"{lacking} was not there within {timeout_s:g} s", hint, exit_code=1)
        sleep(POLL_S)
