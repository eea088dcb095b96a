"""A local stand-in for the OpenAI Realtime service whose "model" is a repeater.

Everything between the microphone and the WebSocket (echo cancellation, barge-in,
truncation, reconnects, session renewal) can be exercised against this server on
127.0.0.1 without an API key, a network or a bill, and the same tests run in CI. It
speaks the GA protocol and honors the parts of the service contract that a client can
get wrong:

* handshake: a missing `Authorization: Bearer ...` is rejected with HTTP 401 (any token
  is accepted); `OpenAI-Beta: realtime=v1` is closed with code 4000 as the service now
  does (`server`);
* its own energy VAD over the input audio timeline (`vad.EnergyVad`), emitting
  `speech_started` / `speech_stopped` / `committed` with the session's prefix padding
  and silence duration; `turn_detection: null` means push-to-talk (client commits and
  calls `response.create`) (`session`);
* the answer is the user's own utterance (`repeater`), streamed as
  `response.output_audio.delta` at real-time pace against a monotonic clock, so
  playback and barge-in timing behave as with the service; `response.create` with
  nothing to repeat answers with a short tone (`responses`);
* interruption: new speech while answering cancels the response (`turn_detected`) when
  `interrupt_response` is set; `response.cancel` cancels it (`client_cancelled`) or
  answers `response_cancel_not_active`;
* `conversation.item.truncate` is rejected, in the service's error shape, for unknown
  items, user items, items without audio and `audio_end_ms` beyond the audio sent;
* the 60-minute session limit (configurable, so renewal can be tested in seconds);
* function tools: told to call one (`LocalServerSettings.call_tool`) that the session
  declares, it answers a question with a function call and no audio, then, once the
  client sent the call's `function_call_output` and `response.create`, repeats the
  question after saying what the tool returned; an output for an unknown call is an
  `invalid_request_error` (`calls`).

It records what it received and sent (`log.ServerLog`) and can drop connections on
demand for reconnect tests. The names below are the package's public surface.
"""

from __future__ import annotations

from pivoicectl.standin.log import ServerLog
from pivoicectl.standin.server import (
    LocalRealtimeServer,
    LocalServerThread,
    serve_forever,
)
from pivoicectl.standin.settings import LocalServerSettings

__all__ = [
    "LocalRealtimeServer",
    "LocalServerSettings",
    "LocalServerThread",
    "ServerLog",
    "serve_forever",
]
