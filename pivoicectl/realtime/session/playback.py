"""Playback accounting for barge-in: what the user actually heard of each answer.

When the user talks over the assistant, two things must happen. The speaker must go
quiet at once (within one audio block), and the service must be told how much of the
answer was really heard (`conversation.item.truncate`), or the model believes it said
things the user never heard. The service measures `audio_end_ms` against the audio it
produced for that item and rejects anything longer, so the only sound basis is the
count of samples the sound device consumed per item, clamped to what was received for
that item. Wall-clock time since the answer started is not: playback stalls, underruns
and buffering make the two drift apart, which is how other clients end up sending
truncations the service rejects.

`PlaybackQueue` is shared between the asyncio side (pushes decoded audio deltas) and
the sound device callback thread (pulls fixed-size blocks). The callback never waits on
anything but one short lock, never allocates more than the block it returns, and gets
silence when the queue is empty or was just flushed.

Units: sample counts are 24 kHz mono PCM16 samples (`*_samples`); durations at the
protocol boundary are milliseconds (`*_ms`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pivoicectl.realtime.protocol.events import (
    BYTES_PER_SAMPLE,
    bytes_to_samples,
    conversation_item_truncate,
    ms_to_samples,
    samples_to_ms,
)


@dataclass(frozen=True)
class TruncationMargins:
    """Safety margins of the truncation point, in milliseconds.

    `device_latency_ms`: audio the callback handed to the sound device but that was
    still in the device/PipeWire buffer when the user interrupted; it was never heard.
    Subtracted from the played count. 0 (the default) reports everything handed over as
    heard, which errs towards the model thinking it said slightly more; set it from the
    output stream's reported latency for a closer figure.

    `received_margin_ms`: backs off from the end of the audio received for the item. The
    clamp to received audio already guarantees the point never exceeds what the server
    sent us, but clients have seen the service reject truncations that were a few tens of
    milliseconds short of the received length (the item's server-side audio can lag the
    stream by a partial chunk). The margin only matters when the interruption falls in
    the last `received_margin_ms` of the received audio, where it costs nothing.
    """

    device_latency_ms: int = 0
    received_margin_ms: int = 100

    def __post_init__(self) -> None:
        if self.device_latency_ms < 0 or self.received_margin_ms < 0:
            raise ValueError("truncation margins must be >= 0 ms")


@dataclass(frozen=True)
class PlayedSpan:
    """`samples` of one item handed to the device in one pull."""

    item_id: str
    response_id: str
    samples: int


@dataclass(frozen=True)
class PullAccounting:
    """What one `pull` returned: audio spans per item, then `silence_samples` of padding."""

    spans: tuple[PlayedSpan, ...]
    silence_samples: int

    @property
    def audio_samples(self) -> int:
        return sum(span.samples for span in self.spans)


@dataclass(frozen=True)
class ItemStatus:
    """A snapshot of one assistant item's playback counters."""

    item_id: str
    response_id: str
    received_samples: int
    played_samples: int
    audio_done: bool
    truncated: bool

    @property
    def finished(self) -> bool:
        """All of the item's audio arrived and was handed to the device."""
        return self.audio_done and self.played_samples >= self.received_samples


@dataclass(frozen=True)
class TruncatePlan:
    """The `conversation.item.truncate` to send after an interruption."""

    item_id: str
    response_id: str
    audio_end_ms: int
    played_samples: int
    received_samples: int

    def event(self, event_id: str | None = None) -> dict[str, Any]:
        """The client event carrying this plan."""
        return conversation_item_truncate(self.item_id, self.audio_end_ms, event_id=event_id)


def truncate_audio_end_ms(
    played_samples: int, received_samples: int, margins: TruncationMargins = TruncationMargins()
) -> int:
    """`audio_end_ms` for an item of which `played_samples` were handed to the device.

    The heard part (played minus device latency) clamped to the received audio minus
    `received_margin_ms`, never negative, and rounded down to whole milliseconds so it
    cannot exceed the item's audio by rounding.
    """
    heard = played_samples - ms_to_samples(margins.device_latency_ms)
    limit = received_samples - ms_to_samples(margins.received_margin_ms)
    return samples_to_ms(max(0, min(heard, limit)))


@dataclass
class _Account:
    item_id: str
    response_id: str
    received_samples: int = 0
    played_samples: int = 0
    audio_done: bool = False
    truncated: bool = False

    def status(self) -> ItemStatus:
        return ItemStatus(
            self.item_id,
            self.response_id,
            self.received_samples,
            self.played_samples,
            self.audio_done,
            self.truncated,
        )


@dataclass
class _Chunk:
    item_id: str
    response_id: str
    pcm: memoryview
    n_samples: int
    offset_samples: int = 0


class PlaybackQueue:
    """Thread-safe queue of assistant audio with per-item playback accounting.

    The asyncio side calls `push` for every audio delta, `mark_audio_done` /
    `mark_response_done` as the server reports them, and `interrupt` on barge-in (it
    flushes the queue and returns the truncation to send, or None). The sound device
    callback calls `pull` once per block.

    Interrupted responses are remembered (bounded) so deltas the server had already
    sent before it processed the cancellation are dropped instead of played.
    """

    def __init__(
        self,
        margins: TruncationMargins = TruncationMargins(),
        max_tracked_items: int = 64,
        max_dropped_responses: int = 256,
    ) -> None:
        self._margins = margins
        self._lock = threading.Lock()
        self._chunks: deque[_Chunk] = deque()
        self._queued_samples = 0
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._max_tracked_items = max_tracked_items
        self._dropped: OrderedDict[str, None] = OrderedDict()
        self._max_dropped = max_dropped_responses
        self._last_pulled_item_id: str | None = None
        self._last_response_id: str | None = None
        self._late_samples_dropped = 0
        self._listener: Callable[[str], None] | None = None
        self._unheard_estimate: Callable[[], int] | None = None

    def set_listener(self, listener: Callable[[str], None] | None) -> None:
        """Call `listener("audio")` when audio is queued into an empty queue and
        `listener("flush")` after every flush or interrupt.

        Why: the sound device edge runs its output stream only while there is something
        to play, and drops the device's buffer on a flush instead of letting it play out;
        both are what make an idle client cheap and a barge-in fast. Called outside the
        lock, on the thread that pushed or flushed; it must not block.
        """
        self._listener = listener

    def set_device_latency_ms(self, latency_ms: int) -> None:
        """The output stream's latency: audio handed over but still buffered when a
        barge-in aborts the stream, so never heard (see `TruncationMargins`)."""
        with self._lock:
            self._margins = dataclasses.replace(
                self._margins, device_latency_ms=max(0, int(latency_ms))
            )

    def set_unheard_estimate(self, estimate: Callable[[], int] | None) -> None:
        """Ask `estimate()` at each interruption for the milliseconds handed over but not
        yet heard, instead of the fixed `device_latency_ms`.

        Why: an edge that keeps a server-side buffer ahead of the speaker (the libpulse
        edge) knows that amount exactly at any moment, and it shrinks as the buffer plays
        between refills. Called under the queue's lock, on the thread that interrupts.
        """
        self._unheard_estimate = estimate

    def _notify(self, what: str) -> None:
        listener = self._listener
        if listener is not None:
            listener(what)

    # --- asyncio side ----------------------------------------------------------------

    def push(self, item_id: str, response_id: str, pcm: bytes) -> bool:
        """Queue a delta's PCM16 bytes; False if dropped (its response was interrupted).

        A trailing odd byte is discarded (it cannot be half a sample).
        """
        n_samples = bytes_to_samples(len(pcm))
        with self._lock:
            if response_id in self._dropped:
                self._late_samples_dropped += n_samples
                return False
            account = self._account(item_id, response_id)
            self._last_response_id = response_id
            if n_samples == 0:
                return True
            account.received_samples += n_samples
            view = memoryview(pcm)[: n_samples * BYTES_PER_SAMPLE]
            self._chunks.append(_Chunk(item_id, response_id, view, n_samples))
            was_empty = self._queued_samples == 0
            self._queued_samples += n_samples
        if was_empty:
            self._notify("audio")
        return True

    def mark_audio_done(self, item_id: str) -> None:
        """`response.output_audio.done` arrived: the item will get no more audio."""
        with self._lock:
            account = self._accounts.get(item_id)
            if account is not None:
                account.audio_done = True

    def mark_response_done(self, response_id: str) -> None:
        """`response.done` arrived: none of the response's items will get more audio."""
        with self._lock:
            for account in self._accounts.values():
                if account.response_id == response_id:
                    account.audio_done = True

    def is_dropped(self, response_id: str) -> bool:
        """Whether deltas of `response_id` are being discarded."""
        with self._lock:
            return response_id in self._dropped

    def flush(self) -> int:
        """Drop everything queued (the device hears silence from its next block on).

        Returns the number of samples dropped. Accounting is untouched: dropped audio
        was received but not played, which is exactly what truncation needs to know.
        """
        with self._lock:
            dropped = self._flush_locked()
        self._notify("flush")
        return dropped

    def interrupt(self, active_response_ids: Iterable[str] = ()) -> TruncatePlan | None:
        """Barge-in: flush, drop late deltas of the affected responses, plan a truncate.

        The affected item is the one at the head of the queue (being played), or else the
        one played last. Affected responses are those with queued audio, the last one
        that sent audio, and `active_response_ids` (responses the caller saw created
        whose audio may not have arrived yet). Returns None when there is nothing to
        truncate: no item, nothing received for it, already truncated, or its playback
        had already finished. Idempotent: a second call for the same item returns None.
        """
        with self._lock:
            target = self._chunks[0].item_id if self._chunks else self._last_pulled_item_id
            affected = {c.response_id for c in self._chunks} | set(active_response_ids)
            if self._last_response_id is not None:
                affected.add(self._last_response_id)
            account = self._accounts.get(target) if target is not None else None
            if account is not None:
                affected.add(account.response_id)
            for response_id in affected:
                self._remember_dropped(response_id)
            self._flush_locked()
            plan = self._plan_locked(account)
        self._notify("flush")
        return plan

    def truncate_plan(self, item_id: str) -> TruncatePlan | None:
        """The truncation `interrupt` would send for `item_id`, without side effects."""
        with self._lock:
            account = self._accounts.get(item_id)
            if account is None:
                return None
            saved = account.truncated
            plan = self._plan_locked(account)
            account.truncated = saved
            return plan

    def item_status(self, item_id: str) -> ItemStatus | None:
        """Counters of `item_id`, or None if it is not (or no longer) tracked."""
        with self._lock:
            account = self._accounts.get(item_id)
            return account.status() if account is not None else None

    @property
    def queued_samples(self) -> int:
        """Samples waiting to be played."""
        with self._lock:
            return self._queued_samples

    @property
    def late_samples_dropped(self) -> int:
        """Samples of interrupted responses that arrived afterwards and were discarded."""
        with self._lock:
            return self._late_samples_dropped

    # --- sound device callback side -------------------------------------------------

    def pull(self, n_samples: int) -> tuple[bytes, PullAccounting]:
        """Exactly `n_samples` of PCM16 for the device, padded with silence.

        Called from the audio callback: holds the lock only to slice the queue; the
        concatenation happens outside it.
        """
        if n_samples <= 0:
            return b"", PullAccounting((), 0)
        parts: list[memoryview] = []
        spans: list[PlayedSpan] = []
        need = n_samples
        with self._lock:
            while need and self._chunks:
                chunk = self._chunks[0]
                take = min(chunk.n_samples - chunk.offset_samples, need)
                start = chunk.offset_samples * BYTES_PER_SAMPLE
                parts.append(chunk.pcm[start : start + take * BYTES_PER_SAMPLE])
                chunk.offset_samples += take
                need -= take
                self._queued_samples -= take
                account = self._account(chunk.item_id, chunk.response_id)
                account.played_samples += take
                self._last_pulled_item_id = chunk.item_id
                if spans and spans[-1].item_id == chunk.item_id:
                    last = spans[-1]
                    spans[-1] = PlayedSpan(last.item_id, last.response_id, last.samples + take)
                else:
                    spans.append(PlayedSpan(chunk.item_id, chunk.response_id, take))
                if chunk.offset_samples >= chunk.n_samples:
                    self._chunks.popleft()
        if need:
            parts.append(memoryview(bytes(need * BYTES_PER_SAMPLE)))
        return b"".join(parts), PullAccounting(tuple(spans), need)

    # --- internals (lock held) -----------------------------------------------------------

    def _account(self, item_id: str, response_id: str) -> _Account:
        account = self._accounts.get(item_id)
        if account is None:
            # A new item id starts its own counters: played/received never carry over.
            account = _Account(item_id, response_id)
            self._accounts[item_id] = account
            while len(self._accounts) > self._max_tracked_items:
                self._accounts.popitem(last=False)
        return account

    def _remember_dropped(self, response_id: str) -> None:
        self._dropped[response_id] = None
        self._dropped.move_to_end(response_id)
        while len(self._dropped) > self._max_dropped:
            self._dropped.popitem(last=False)

    def _flush_locked(self) -> int:
        dropped = self._queued_samples
        self._chunks.clear()
        self._queued_samples = 0
        return dropped

    def _plan_locked(self, account: _Account | None) -> TruncatePlan | None:
        if account is None or account.truncated or account.received_samples == 0:
            # Nothing received means nothing heard; the service also rejects truncating
            # an item that holds no audio yet.
            return None
        margins = self._margins
        if self._unheard_estimate is not None:
            margins = dataclasses.replace(
                margins, device_latency_ms=max(0, int(self._unheard_estimate()))
            )
        # Handed over is not heard: an edge that keeps audio ahead at the server has all
        # of a short answer out of the queue while most of it is still to play.
        unheard = ms_to_samples(margins.device_latency_ms) if self._unheard_estimate else 0
        heard = account.played_samples - unheard
        margin = ms_to_samples(margins.received_margin_ms)
        if account.audio_done and heard >= account.received_samples - margin:
            return None  # it had finished playing: the model said nothing unheard
        account.truncated = True
        return TruncatePlan(
            item_id=account.item_id,
            response_id=account.response_id,
            audio_end_ms=truncate_audio_end_ms(
                account.played_samples, account.received_samples, margins
            ),
            played_samples=account.played_samples,
            received_samples=account.received_samples,
        )


@dataclass(frozen=True)
class PlayReport:
    """What one output callback handed to the device, reported from the audio thread.

    `callback_s`: monotonic time the callback ran. `audible_s`: when the first sample of
    that block reaches the speaker (callback time plus the latency the device reports).
    `underflows`/`overflows`: cumulative counts of output underruns and input overruns.
    """

    callback_s: float
    audible_s: float
    spans: tuple[PlayedSpan, ...]
    silence_samples: int
    underflows: int = 0
    overflows: int = 0
    level_dbfs: float = -120.0
    """RMS level of the block handed to the device (the echo guard's reference)."""

    @property
    def audio_samples(self) -> int:
        return sum(span.samples for span in self.spans)
