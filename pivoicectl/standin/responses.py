"""One connection's responses: an answer streamed at real-time pace, cancelled or completed.

Kept apart from the input side (`session`) because it is the part with its own task
and clock: the answer leaves in chunks against a monotonic clock, so a client's playback
and barge-in timing behave as with the service, and a cancel lands between two chunks,
never in the middle of one. At most one response streams at a time, as on the service.
A response is either spoken (an `Answer`, audio and transcript) or a function call (a
`FunctionCall`, its JSON arguments streamed in pieces, no audio).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.exceptions import ConnectionClosed

from pivoicectl.realtime.protocol import server_events as se
from pivoicectl.realtime.protocol.events import BYTES_PER_SAMPLE, ms_to_samples
from pivoicectl.standin import repeater
from pivoicectl.standin.repeater import Answer
from pivoicectl.standin.session_config import new_id
from pivoicectl.standin.settings import LocalServerSettings

Send = Callable[[dict[str, Any]], Awaitable[None]]
"""Sends one server event on the connection (stamping its `event_id`)."""


@dataclass
class Item:
    """A conversation item as far as truncation needs to know it."""

    id: str
    role: Literal["user", "assistant", "tool"]
    reply_pcm: bytes = b""
    user_audio_samples: int = 0
    sent_samples: int = 0
    truncated_at_samples: int | None = None

    @property
    def audio_samples(self) -> int:
        """The assistant audio the item holds: what was sent, cut by any truncation."""
        if self.truncated_at_samples is None:
            return self.sent_samples
        return min(self.sent_samples, self.truncated_at_samples)


ARGUMENT_PIECE_CHARS = 16
"""A function call's arguments leave in pieces of this many characters, as a model
streams them, so a client joins deltas rather than relying on one."""


@dataclass(frozen=True)
class FunctionCall:
    """A response that calls tool `name`: what the client must run and answer."""

    call_id: str
    name: str
    arguments: str
    input_audio_samples: int


@dataclass
class ResponseRun:
    """One response in flight: what it says or calls, its output item and how it ends."""

    id: str
    item: Item
    answer: Answer | FunctionCall
    previous_item_id: str | None
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    status: str = "in_progress"
    task: asyncio.Task[None] | None = None
    arguments_sent: str = ""


class Responder:
    """Starts, streams and cancels the responses of one connection."""

    def __init__(self, send: Send, settings: LocalServerSettings) -> None:
        self._send = send
        self.settings = settings
        self.active: ResponseRun | None = None

    async def start(
        self,
        item: Item,
        answer: Answer | FunctionCall,
        previous_item_id: str | None,
        output_audio: dict[str, Any],
    ) -> None:
        """Announce a response saying or calling `answer` in `item` and start streaming it."""
        run = ResponseRun(new_id("resp"), item, answer, previous_item_id)
        self.active = run
        await self._send_start(run, output_audio)
        run.task = asyncio.create_task(self._stream(run))

    async def cancel(self, reason: str) -> bool:
        """Cancel the running response; True if it ended as cancelled."""
        run = self.active
        if run is None or run.task is None:
            return False
        run.cancel_reason = reason
        run.cancel_event.set()
        with contextlib.suppress(ConnectionClosed):
            await run.task
        return run.status == "cancelled"

    async def close(self) -> None:
        """Stop streaming without a word: the connection is gone."""
        run = self.active
        if run is not None and run.task is not None:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await run.task

    async def _send_start(self, run: ResponseRun, output_audio: dict[str, Any]) -> None:
        await self._send(se.response_created(run.id, output_audio))
        item = self._wire_item(run, "in_progress")
        await self._send(se.response_output_item_added(run.id, item))
        await self._send(se.conversation_item_added(item, run.previous_item_id))
        if isinstance(run.answer, Answer):
            await self._send(se.response_content_part_added(run.id, run.item.id, se.audio_part("")))

    def _wire_item(self, run: ResponseRun, status: str) -> dict[str, Any]:
        if isinstance(run.answer, FunctionCall):
            call = run.answer
            return se.function_call_item(
                run.item.id, call.call_id, call.name, run.arguments_sent, status
            )
        transcript = None if status == "in_progress" else run.answer.transcript
        return se.assistant_audio_item(run.item.id, status, transcript)

    async def _stream(self, run: ResponseRun) -> None:
        try:
            if isinstance(run.answer, FunctionCall):
                await self._stream_call(run, run.answer)
            else:
                await self._stream_audio(run, run.answer)
        except ConnectionClosed:
            pass  # the client is gone; the session's receive loop is ending too
        finally:
            if self.active is run:
                self.active = None

    async def _stream_call(self, run: ResponseRun, call: FunctionCall) -> None:
        """Send the arguments in pieces; a cancel lands between two of them.

        No pacing: a model writes a call's few bytes of arguments at once. The service
        reports a cancelled call's arguments as far as they got, with the item
        incomplete.
        """
        arguments = call.arguments
        for offset in range(0, max(1, len(arguments)), ARGUMENT_PIECE_CHARS):
            await asyncio.sleep(0)  # let a cancel that is already waiting land first
            if run.cancel_reason is not None:
                break
            piece = arguments[offset : offset + ARGUMENT_PIECE_CHARS]
            run.arguments_sent += piece
            await self._send(
                se.response_function_call_arguments_delta(run.id, run.item.id, call.call_id, piece)
            )
        await self._send(
            se.response_function_call_arguments_done(
                run.id, run.item.id, call.call_id, call.name, run.arguments_sent
            )
        )
        if run.cancel_reason is not None:
            await self._finish_cancelled(run)
            return
        run.status = "completed"
        item = self._wire_item(run, "completed")
        await self._send(se.response_output_item_done(run.id, item))
        await self._send(se.conversation_item_done(item, run.previous_item_id))
        await self._send_response_done(run, item)

    async def _stream_audio(self, run: ResponseRun, answer: Answer) -> None:
        """Send the answer in `output_chunk_ms` chunks, never ahead of real time.

        Chunk i leaves at t0 + i * chunk duration (divided by `output_speed`): the client
        holds at most one chunk more than it has played, as with a paced service. The
        wait doubles as the cancellation point, so a cancel is acted on within
        microseconds, never mid-chunk.
        """
        loop = asyncio.get_running_loop()
        chunk_samples = ms_to_samples(self.settings.output_chunk_ms)
        chunk_s = self.settings.output_chunk_ms / 1000 / self.settings.output_speed
        pcm = answer.pcm
        n_samples = len(pcm) // BYTES_PER_SAMPLE
        t0 = loop.time()
        for index, offset in enumerate(range(0, n_samples, chunk_samples)):
            if index:
                delay = t0 + index * chunk_s - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(run.cancel_event.wait(), delay)
            if run.cancel_reason is not None:
                break
            piece = pcm[offset * BYTES_PER_SAMPLE : (offset + chunk_samples) * BYTES_PER_SAMPLE]
            run.item.sent_samples += len(piece) // BYTES_PER_SAMPLE
            await self._send(se.response_output_audio_delta(run.id, run.item.id, piece))
            if index == 0:
                await self._send(
                    se.response_output_audio_transcript_delta(
                        run.id, run.item.id, answer.transcript
                    )
                )
        # No await between this check and the decision: a cancel either lands before
        # it (cancelled) or finds the response completing (too late to cancel).
        if run.cancel_reason is not None:
            await self._finish_cancelled(run)
        else:
            await self._finish_completed(run, answer)

    async def _finish_completed(self, run: ResponseRun, answer: Answer) -> None:
        run.status = "completed"
        transcript = answer.transcript
        await self._send(se.response_output_audio_transcript_done(run.id, run.item.id, transcript))
        await self._send(se.response_output_audio_done(run.id, run.item.id))
        await self._send(
            se.response_content_part_done(run.id, run.item.id, se.audio_part(transcript))
        )
        item = self._wire_item(run, "completed")
        await self._send(se.response_output_item_done(run.id, item))
        await self._send(se.conversation_item_done(item, run.previous_item_id))
        await self._send_response_done(run, item)

    async def _finish_cancelled(self, run: ResponseRun) -> None:
        run.status = "cancelled"
        item = self._wire_item(run, "incomplete")
        await self._send(se.response_output_item_done(run.id, item))
        await self._send_response_done(run, item, reason=run.cancel_reason)

    async def _send_response_done(
        self, run: ResponseRun, item: dict[str, Any], reason: str | None = None
    ) -> None:
        said = run.arguments_sent if isinstance(run.answer, FunctionCall) else run.answer.transcript
        tokens = repeater.usage(run.answer.input_audio_samples, run.item.sent_samples, said)
        usage = se.usage(tokens.input_audio, tokens.output_audio, tokens.output_text)
        await self._send(
            se.response_done(run.id, run.status, reason=reason, output=[item], usage=usage)
        )
