"""The protocol state machine of one WebSocket connection to the stand-in server.

Everything the service decides about a conversation from the client's events lives
here: the session configuration, the input audio timeline and its turns (by the
server's VAD or by hand), the items a turn becomes, when a response starts or is
interrupted, and whether a truncation is valid. Responses themselves stream in
`responses`; what they say comes from `repeater`; the function calls they make and the
outputs a client sends back are kept in `calls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from pivoicectl.realtime.protocol import server_events as se
from pivoicectl.realtime.protocol.events import (
    BYTES_PER_SAMPLE,
    SAMPLE_RATE_HZ,
    decode_audio,
    ms_to_samples,
    samples_to_ms,
)
from pivoicectl.standin import repeater
from pivoicectl.standin.calls import ToolCalls, read_output_item
from pivoicectl.standin.log import ServerLog, TruncationRecord
from pivoicectl.standin.responses import FunctionCall, Item, Responder
from pivoicectl.standin.session_config import (
    Rejection,
    check_session_update,
    deep_merge,
    default_session,
    new_id,
    vad_parameters,
)
from pivoicectl.standin.settings import LocalServerSettings
from pivoicectl.standin.vad import EnergyVad, VadEvent

log = logging.getLogger(__name__)


class Session:
    """Protocol state of one WebSocket connection."""

    def __init__(
        self,
        ws: ServerConnection,
        connection_id: int,
        model: str,
        settings: LocalServerSettings,
        server_log: ServerLog,
        new_call_id: Callable[[], str],
    ) -> None:
        self.settings = settings
        self.log = server_log
        self.ws = ws
        self.connection_id = connection_id
        self.session = default_session(model)
        self.timeline_samples = 0
        self.buffer = bytearray()
        self.buffer_start_samples = 0
        self.vad: EnergyVad | None = None
        self.speech_item_id: str | None = None
        self.speech_audio_start_samples = 0
        self.items: dict[str, Item] = {}
        self.last_item_id: str | None = None
        self.pending: Item | None = None
        self.responder = Responder(self.send, settings)
        self.calls = ToolCalls(settings.call_tool, settings.call_tool_args, new_call_id)
        self._configure_vad()

    # --- configuration --------------------------------------------------------------

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        td = self.session["audio"]["input"].get("turn_detection")
        return td if isinstance(td, dict) else None

    def _td_flag(self, name: str) -> bool:
        td = self.turn_detection
        return bool(td.get(name, True)) if td is not None else False

    @property
    def prefix_samples(self) -> int:
        td = self.turn_detection or {}
        return ms_to_samples(int(td.get("prefix_padding_ms", 300) or 0))

    def _configure_vad(self) -> None:
        td = self.turn_detection
        if td is None:
            self.vad = None
            return
        threshold, silence_ms = vad_parameters(td)
        if self.vad is None:
            self.vad = EnergyVad(threshold, silence_ms, self.settings, self.timeline_samples)
        else:
            self.vad.configure(threshold, silence_ms)

    # --- sending ------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        event = se.stamp(event, new_id("event"))
        self.log.add(self.connection_id, "out", event)
        await self.ws.send(json.dumps(event, separators=(",", ":")))

    async def send_error(
        self,
        code: str | None,
        message: str,
        param: str | None = None,
        client_event_id: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        await self.send(se.error(code, message, param, client_event_id, error_type))

    # --- receiving ----------------------------------------------------------------------

    async def run(self) -> None:
        await self.send(se.session_created(self.session))
        limit_task = asyncio.create_task(self._session_limit())
        try:
            async for message in self.ws:
                try:
                    await self.handle(message)
                except ConnectionClosed:
                    raise
                except Exception:  # a bug here must not kill the session
                    log.exception("local server: failed to handle a client event")
                    await self.send_error(
                        None,
                        "The server had an error while processing your request.",
                        error_type="server_error",
                    )
        except ConnectionClosed:
            pass
        finally:
            limit_task.cancel()
            await self.responder.close()
            with contextlib.suppress(asyncio.CancelledError):
                await limit_task

    async def _session_limit(self) -> None:
        await asyncio.sleep(self.settings.session_limit_s)
        minutes = self.settings.session_limit_s / 60
        with contextlib.suppress(ConnectionClosed):
            await self.send_error(
                "session_expired",
                f"Your session hit the maximum duration of {minutes:g} minutes.",
            )
            await self.ws.close(1000, "session_expired")

    async def handle(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (ValueError, TypeError):
            await self.send_error("invalid_json", "The event is not valid JSON.")
            return
        if not isinstance(event, dict):
            await self.send_error("invalid_json", "The event must be a JSON object.")
            return
        self.log.add(self.connection_id, "in", event)
        event_type = event.get("type")
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = self._handlers().get(event_type) if isinstance(event_type, str) else None
        if handler is None:
            await self.send_error(
                "invalid_value",
                f"Invalid value: '{event_type}'. Supported values are: "
                + ", ".join(f"'{t}'" for t in self._handlers()),
                param="type",
                client_event_id=event_id,
            )
            return
        await handler(event, event_id)

    def _handlers(self) -> dict[str, Callable[[dict[str, Any], str | None], Any]]:
        return {
            "session.update": self.on_session_update,
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
            "conversation.item.truncate": self.on_truncate,
            "conversation.item.create": self.on_item_create,
        }

    async def on_session_update(self, event: dict[str, Any], event_id: str | None) -> None:
        update = event.get("session")
        rejection = check_session_update(update)
        if rejection is not None:
            await self.send_error(rejection.code, rejection.message, rejection.param, event_id)
            return
        assert isinstance(update, dict)
        self.session = deep_merge(self.session, update)
        self._configure_vad()
        await self.send(se.session_updated(self.session))

    async def on_append(self, event: dict[str, Any], event_id: str | None) -> None:
        audio = event.get("audio")
        pcm = decode_audio(audio)
        pcm = pcm[: len(pcm) - len(pcm) % BYTES_PER_SAMPLE]  # whole samples only
        if not pcm and audio:
            await self.send_error(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded audio bytes (mono PCM16 at 24kHz).",
                "audio",
                event_id,
            )
            return
        self.buffer += pcm
        self.timeline_samples += len(pcm) // BYTES_PER_SAMPLE
        if self.vad is None:
            return
        for vad_event in self.vad.feed(pcm):
            if vad_event.kind == "start":
                await self._speech_started(vad_event)
            else:
                await self._speech_stopped(vad_event)
        if not self.vad.speaking:
            self._trim_idle_buffer()

    def _trim_idle_buffer(self) -> None:
        # Between turns only the last prefix padding (plus slack for the frames a start
        # needs) can become part of the next item; keep memory flat on a silent line.
        keep = self.prefix_samples + ms_to_samples(1000)
        excess = len(self.buffer) // BYTES_PER_SAMPLE - keep
        if excess > 0:
            del self.buffer[: excess * BYTES_PER_SAMPLE]
            self.buffer_start_samples += excess

    def _slice(self, start_samples: int, end_samples: int) -> bytes:
        a = max(0, start_samples - self.buffer_start_samples) * BYTES_PER_SAMPLE
        b = max(0, end_samples - self.buffer_start_samples) * BYTES_PER_SAMPLE
        return bytes(self.buffer[a:b])

    async def _speech_started(self, vad_event: VadEvent) -> None:
        start = max(self.buffer_start_samples, vad_event.speech_start_samples - self.prefix_samples)
        self.speech_item_id = new_id("item")
        self.speech_audio_start_samples = start
        await self.send(
            se.input_audio_buffer_speech_started(self.speech_item_id, samples_to_ms(start))
        )
        if self.responder.active is not None and self._td_flag("interrupt_response"):
            await self.responder.cancel("turn_detected")

    async def _speech_stopped(self, vad_event: VadEvent) -> None:
        item_id = self.speech_item_id or new_id("item")
        self.speech_item_id = None
        start = self.speech_audio_start_samples
        await self.send(
            se.input_audio_buffer_speech_stopped(item_id, samples_to_ms(vad_event.stop_samples))
        )
        committed = self._slice(start, vad_event.stop_samples)
        reply = self._slice(start, vad_event.speech_end_samples)
        consumed = max(0, vad_event.stop_samples - self.buffer_start_samples)
        del self.buffer[: consumed * BYTES_PER_SAMPLE]
        self.buffer_start_samples += consumed
        await self._commit_item(item_id, committed, reply)
        if self._td_flag("create_response") and self.responder.active is None:
            await self._start_response()

    async def _commit_item(self, item_id: str, committed: bytes, reply: bytes) -> None:
        previous = self.last_item_id
        item = Item(
            id=item_id,
            role="user",
            reply_pcm=reply,
            user_audio_samples=len(committed) // BYTES_PER_SAMPLE,
        )
        self.items[item_id] = item
        self.last_item_id = item_id
        if self.pending is not None:
            self.pending.reply_pcm = b""  # superseded unanswered turn: nothing will use it
        self.pending = item
        await self.send(se.input_audio_buffer_committed(item_id, previous))
        wire_item = se.user_audio_item(item_id)
        await self.send(se.conversation_item_added(wire_item, previous))
        await self.send(se.conversation_item_done(wire_item, previous))
        transcription = self.session["audio"]["input"].get("transcription")
        if isinstance(transcription, dict) and transcription.get("model"):
            await self.send(
                se.conversation_item_input_audio_transcription_completed(
                    item_id,
                    repeater.heard_transcript(item.user_audio_samples),
                    item.user_audio_samples / SAMPLE_RATE_HZ,
                )
            )

    async def on_commit(self, event: dict[str, Any], event_id: str | None) -> None:
        buffered = len(self.buffer) // BYTES_PER_SAMPLE
        speaking = self.vad is not None and self.vad.speaking
        start = self.speech_audio_start_samples if speaking else self.buffer_start_samples
        audio = self._slice(start, self.timeline_samples)
        have_ms = len(audio) / BYTES_PER_SAMPLE * 1000 / SAMPLE_RATE_HZ
        if have_ms < self.settings.commit_min_ms:
            await self.send_error(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{self.settings.commit_min_ms}ms of audio, but buffer only has "
                f"{have_ms:.2f}ms of audio.",
                None,
                event_id,
            )
            return
        item_id = self.speech_item_id or new_id("item")
        self.speech_item_id = None
        del self.buffer[: buffered * BYTES_PER_SAMPLE]
        self.buffer_start_samples = self.timeline_samples
        if self.vad is not None:
            self.vad.reset_turn()
        await self._commit_item(item_id, audio, audio)

    async def on_clear(self, event: dict[str, Any], event_id: str | None) -> None:
        self.buffer.clear()
        self.buffer_start_samples = self.timeline_samples
        self.speech_item_id = None
        if self.vad is not None:
            self.vad.reset_turn()
        await self.send(se.input_audio_buffer_cleared())

    # --- responses ----------------------------------------------------------------------

    async def on_response_create(self, event: dict[str, Any], event_id: str | None) -> None:
        active = self.responder.active
        if active is not None:
            await self.send_error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {active.id}. "
                "Wait until the response is finished before creating a new one.",
                None,
                event_id,
            )
            return
        await self._start_response()

    async def _start_response(self) -> None:
        """Answer the question waiting, else a tool's output waiting, else with a tone.

        A question becomes a function call when the server is to call a tool the
        session declares; the answer after its output repeats that question.
        """
        pending = self.pending
        self.pending = None
        answer: repeater.Answer | FunctionCall
        if pending is not None and pending.reply_pcm:
            question, samples = pending.reply_pcm, pending.user_audio_samples
            pending.reply_pcm = b""  # answered audio is not needed again
            tool = self.calls.tool_to_call(self.session)
            if tool is not None:
                answer = self.calls.make(tool, question, samples)
            else:
                answer = repeater.answer(question, samples, self.settings)
        elif (result := self.calls.take_result()) is not None:
            answer = repeater.answer_after_tool(
                result.name,
                result.output,
                result.question_pcm,
                result.input_audio_samples,
                self.settings,
            )
        else:
            answer = repeater.answer(b"", 0, self.settings)
        item = Item(id=new_id("item"), role="assistant")
        previous = self.last_item_id
        self.items[item.id] = item
        self.last_item_id = item.id
        await self.responder.start(item, answer, previous, self.session["audio"]["output"])

    async def on_response_cancel(self, event: dict[str, Any], event_id: str | None) -> None:
        if not await self.responder.cancel("client_cancelled"):
            await self.send_error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                None,
                event_id,
            )

    async def on_item_create(self, event: dict[str, Any], event_id: str | None) -> None:
        """Take a tool's output for a call this session made; refuse anything else (an
        output for a call it did not make is the service's `invalid_request_error`)."""
        item = read_output_item(event.get("item"))
        if isinstance(item, Rejection):
            await self.send_error(item.code, item.message, item.param, event_id)
            return
        if not self.calls.knows(item.call_id):
            await self.send_error(
                "invalid_value",
                f"No tool call found for function call output with call_id '{item.call_id}'.",
                "item.call_id",
                event_id,
            )
            return
        item_id = item.item_id or new_id("item")
        if item_id in self.items:
            await self.send_error(
                "invalid_value", f"Item with id '{item_id}' already exists.", "item.id", event_id
            )
            return
        self.calls.record_output(item.call_id, item.output)
        previous = self.last_item_id
        self.items[item_id] = Item(id=item_id, role="tool")
        self.last_item_id = item_id
        wire_item = se.function_call_output_item(item_id, item.call_id, item.output)
        await self.send(se.conversation_item_added(wire_item, previous))
        await self.send(se.conversation_item_done(wire_item, previous))

    async def on_truncate(self, event: dict[str, Any], event_id: str | None) -> None:
        """Check and record a truncation as the service does.

        The item's audio is what was sent for it (cut by earlier truncations); a point
        beyond that is rejected with the service's "already shorter" error. Truncating
        an item whose answer is still streaming does not stop the stream (the client is
        expected to cancel first); later chunks do not lengthen the truncated item.
        """
        item_id = event.get("item_id")
        audio_end_ms = event.get("audio_end_ms")
        content_index = event.get("content_index", 0)
        item = self.items.get(item_id) if isinstance(item_id, str) else None

        async def reject(code: str, message: str, param: str, item_ms: int | None = None) -> None:
            self.log.add_truncation(
                TruncationRecord(
                    self.connection_id,
                    str(item_id),
                    int(audio_end_ms) if isinstance(audio_end_ms, int) else -1,
                    accepted=False,
                    error_code=code,
                    item_audio_ms=item_ms,
                )
            )
            await self.send_error(code, message, param, event_id)

        if not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool) or audio_end_ms < 0:
            await reject(
                "invalid_value", "Invalid 'audio_end_ms': expected an integer >= 0.", "audio_end_ms"
            )
            return
        if item is None:
            await reject(
                "invalid_value",
                f"Conversation item with item_id '{item_id}' does not exist.",
                "item_id",
            )
            return
        if content_index != 0:
            await reject(
                "invalid_value", "Invalid 'content_index': only 0 exists.", "content_index"
            )
            return
        if item.role != "assistant" or item.sent_samples == 0:
            await reject(
                "unsupported_content_type",
                "Only model output audio messages can be truncated",
                "item_id",
            )
            return
        # Exact comparison in samples, so a point derived from received audio always fits.
        item_ms = samples_to_ms(item.audio_samples)
        if ms_to_samples(audio_end_ms) > item.audio_samples:
            await reject(
                "invalid_value",
                f"Audio content of {item_ms}ms is already shorter than {audio_end_ms}ms",
                "audio_end_ms",
                item_ms,
            )
            return
        item.truncated_at_samples = ms_to_samples(audio_end_ms)
        self.log.add_truncation(
            TruncationRecord(
                self.connection_id, item.id, audio_end_ms, accepted=True, item_audio_ms=item_ms
            )
        )
        await self.send(se.conversation_item_truncated(item.id, audio_end_ms))
