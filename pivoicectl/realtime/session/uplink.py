"""When mic audio goes to the service: promptly while someone may be talking, in
batches while the room is quiet.

Why: each WebSocket send costs a wakeup at both ends. In the simulated room one send
cost the client about 0.13 ms of CPU, so a 20 ms mic sent block by block took 0.6-0.7 %
of a core, most of the 1 % budget for the whole client. Quiet audio (nobody
talking: most of the time, and all the time the assistant speaks through a working
echo canceller) gains nothing from arriving 20 ms at a time. So quiet blocks wait, up to
`quiet_batch_ms`, and go out as one `input_audio_buffer.append`; the first block above
the threshold sends everything waiting at once, and from then until `hangover_ms` after
the last loud one blocks go out every `speech_batch_ms` (0: one by one). The service's VAD
therefore sees speech start as soon as it would otherwise, and the silence that ends a
turn (its silence_duration_ms, 500 ms by default) arrives within `speech_batch_ms` of when
it would block by block: `run` sends speech every 40 ms, which halves the sends (and,
with the edge reading the mic as seldom, the wakeups) of someone talking, for at most
20 ms more before the service hears the end of a turn or a barge-in.

While the room is quiet and nothing plays (`idle_batch_ms`, 200 ms in `run`), there is
no answer to interrupt, and a question's first words reaching the service up to that
much later change nothing a user notices: the rest of the question follows every speech
batch, so the service hears its end as early as before. Reading the mic that seldom
halves the wakeups of an assistant that waits to be spoken to, which is most of its day.

While someone talks and nothing plays (`talk_batch_ms`, 200 ms in `run`), the loud
blocks of a question wait longer still: nothing is decided on them until the turn ends,
and the quiet blocks that end it go every speech batch again, so the service hears the
end of the turn as early as with speech batches throughout, as long as its VAD waits
longer than a talk batch for silence (500 ms by default; a semantic VAD that ends a
turn sooner hears it up to a talk batch late). Speech over an answer, a barge-in,
always goes every speech batch. Once the service says the turn ended
(`speech_stopped`), the rest of the hangover goes in quiet batches again.

Measured in the simulated room (`bench/bench_run.py`, alternating runs, medians): 200 ms
talk batches take 0.91-1.00 % of a core against 1.04-1.16 % with 100 ms. Voice to voice
at the speaker was 562-573 ms against 544-554 ms in one series of 4 pairs, but 547-563
ms in later runs, and 544-547 ms against 553-563 ms on a version without `turn_ended`
and without the edge's ticks riding on deltas: a cost of 200 ms talk batches, if any, is
under the bench's noise. With 40 ms batches throughout it was 540-561 ms; 100 ms batches
throughout cost 566 ms against 545 ms in the same hour.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivoicectl.core.setting_checks import check_fields, checked
from pivoicectl.dsp.levels import pcm16_dbfs
from pivoicectl.dsp.noise_floor import NoiseFloor, NoiseFloorSettings


@dataclass(frozen=True)
class UplinkSettings:
    """Batching of mic audio; `quiet_batch_ms = 0` sends every block at once (and turns
    speech batching off too)."""

    quiet_batch_ms: int = checked(0, lo=0, hi=500)
    speech_batch_ms: int = checked(0, lo=0, hi=200)
    """Inside the hangover, blocks go out in batches this long (0: one by one); the loud
    block that starts speech always goes at once."""
    idle_batch_ms: int = checked(0, lo=0, hi=1000)
    """While the room is quiet and nothing plays, blocks may wait this long (0: the quiet
    batch); the loud block that starts speech still sends everything waiting at once."""
    talk_batch_ms: int = checked(0, lo=0, hi=500)
    """Loud blocks while nothing plays go out in batches this long (0: the speech batch)."""
    hangover_ms: int = 800
    """Blocks keep going out every speech batch this long after the last loud one."""
    loud_dbfs: float = -55.0
    """A block above this level (RMS, dBFS) is sent at once..."""
    floor_margin_db: float = 10.0
    """...or above the room's noise floor plus this, whichever is higher."""
    floor_rise_db_per_s: float = 1.0
    """How fast the tracked noise floor follows the room getting louder."""

    def __post_init__(self) -> None:
        check_fields(self)


QUIET_BATCH_MS = 100
"""`run`: quiet mic audio while an answer is under way goes out in batches this long."""
SPEECH_BATCH_MS = 40
"""`run`: speech over an answer, and the quiet that ends a turn."""
IDLE_BATCH_MS = 200
"""`run`: quiet mic audio while nothing plays."""
TALK_BATCH_MS = 200
"""`run`: speech while nothing plays."""

RUN_UPLINK = UplinkSettings(
    quiet_batch_ms=QUIET_BATCH_MS,
    speech_batch_ms=SPEECH_BATCH_MS,
    idle_batch_ms=IDLE_BATCH_MS,
    talk_batch_ms=TALK_BATCH_MS,
)
"""The batching `run` uses. Not a user setting: the figures above were measured in the
simulated room on one 2-core VM, too little to offer them as knobs; `bench/bench_run.py`
compares others through `pivoicectl.commands.run.BENCH_UPLINK_VAR`."""


class UplinkPacer:
    """Per mic block: send now (True), or let it wait with the quiet ones (False)."""

    def __init__(self, settings: UplinkSettings, block_ms: float) -> None:
        self.settings = settings
        self.block_ms = block_ms
        # Below loud_dbfs - floor_margin_db the floor decides nothing (loud_dbfs does), so
        # it starts there and never goes lower: after digital silence it is that close to
        # a room that got louder.
        lowest_dbfs = settings.loud_dbfs - settings.floor_margin_db
        self._floor = NoiseFloor(
            NoiseFloorSettings(rise_db_per_s=settings.floor_rise_db_per_s, min_dbfs=lowest_dbfs),
            start_dbfs=lowest_dbfs,
        )
        self._loud_until_s = float("-inf")
        self._waiting_ms = 0.0
        self._last_s: float | None = None
        self._talking_alone = False
        """The last block was loud and nothing played: the talk batch applies."""

    def quiet(self, now_s: float) -> bool:
        """Batching is on and nobody has been loud for the hangover."""
        return self.settings.quiet_batch_ms > 0 and now_s >= self._loud_until_s

    def speech_recent(self, now_s: float) -> bool:
        """Someone was loud within the hangover: the service may not have said so yet
        (its speech_started comes a round trip and a VAD decision later)."""
        return now_s < self._loud_until_s

    def period_ms(self, now_s: float, playing: bool = True) -> int:
        """How seldom the mic may be read for now without delaying a send: the idle batch
        while the room is quiet and nothing plays, the quiet batch while it is quiet, the
        talk batch while someone talks and nothing plays, the speech batch for the rest of
        the hangover, 0 for every block."""
        s = self.settings
        if self.quiet(now_s):
            return s.quiet_batch_ms if playing else max(s.idle_batch_ms, s.quiet_batch_ms)
        if s.quiet_batch_ms <= 0:
            return 0
        return self._batch_ms(playing)

    def _batch_ms(self, playing: bool) -> int:
        """The batch inside the hangover."""
        s = self.settings
        if self._talking_alone and not playing:
            return max(s.talk_batch_ms, s.speech_batch_ms)
        return s.speech_batch_ms

    def turn_ended(self, now_s: float) -> None:
        """The service ended the user's turn (`speech_stopped`): the hangover is over.

        The hangover sends the quiet after speech every speech batch so that the service
        hears the end of a turn promptly; once it has said so, the rest of the hangover
        (about 300 ms of the 800, with the service's 500 ms of VAD silence) would only
        cost sends and wakeups. If the user goes on talking, the next loud block starts
        speech again and sends everything waiting at once."""
        self._loud_until_s = min(self._loud_until_s, now_s)

    def feed(self, pcm: bytes, now_s: float, playing: bool = True) -> bool:
        """`playing`: whether an answer plays (speech over it goes every speech batch)."""
        s = self.settings
        if s.quiet_batch_ms <= 0:
            return True
        level = pcm16_dbfs(pcm)
        elapsed_s = 0.0 if self._last_s is None else now_s - self._last_s
        self._last_s = now_s
        floor_dbfs = self._floor.update(level, elapsed_s)
        talking = now_s < self._loud_until_s
        loud = level > max(s.loud_dbfs, floor_dbfs + s.floor_margin_db)
        self._talking_alone = loud and not playing
        if loud:
            self._loud_until_s = now_s + s.hangover_ms / 1000
            if not talking:  # speech starts: everything waiting goes at once
                self._waiting_ms = 0.0
                return True
        batch = self._batch_ms(playing) if now_s < self._loud_until_s else s.quiet_batch_ms
        self._waiting_ms += self.block_ms
        if self._waiting_ms >= batch:
            self._waiting_ms = 0.0
            return True
        return False
