"""`pivoicectl parrot`: repeat what it hears, once; count the times it hears itself.

A loopback that proves there is no echo loop: it listens on the default source
(source_ec once `setup` ran), cuts utterances with the numpy VAD, plays each back once
on the default sink, and keeps listening. A capture that starts during (or just after)
its own playback and matches what it played is a self-trigger: that is how a voice
assistant talks to itself forever. `--self-test` needs nobody in the room: it plays a
known utterance as its own reply and checks whether it comes back.

Audio goes through parec/pacat (pivoicectl.system.recorder): the capture is drained by a reader
thread and the playback fed by another, so the loop here never blocks on audio I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pivoicectl import render as output
from pivoicectl.errors import UserError

RATE = 16000
FRAME_MS = 20.0
SETTLE_S = 0.6
"""Room tone recorded before the self-test plays: the VAD's floor starts on it."""
GRACE_S = 0.5
SELF_TEST_TEXT = "Testing, one, two, three. Can the assistant hear itself?"
SELF_TEST_LEVEL_DBFS = -20.0
SELF_TEST_ROUNDS = 2
LOOP_FRACTION = 0.5
"""Self-test verdict: an echo loop is the parrot re-capturing at least this share of
what it played in one round. Measured in the simulated room (PipeWire 1.4.2): with the
raw mic it hears 95-100 % of its line, every round; through source_ec it sometimes
catches one 0.4-0.5 s blip at -45..-55 dBFS where a playback starts after silence
(the canceller re-aligning its reference), about 10 % of the line, which dies out
instead of looping. Both are reported (`self_triggers`, `captures`)."""
NO_LOOP = "no echo loop"
LOOP = "echo loop detected"


@dataclass(frozen=True)
class ParrotOptions:
    rounds: int = 3
    timeout_s: float = 60.0
    self_test: bool = False
    source: str | None = None
    sink: str | None = None
    grace_s: float = GRACE_S


@dataclass
class Capture:
    start_s: float
    duration_s: float
    level_dbfs: float
    self_trigger: bool
    during_playback: bool
    correlates: bool
    played_back: bool
    round: int = 0
    """Which of our playbacks was last started when this was heard (0: none yet)."""


@dataclass
class ParrotResult:
    mode: str  # "parrot" or "self-test"
    verdict: str
    source: str
    sink: str
    rounds_played: int = 0
    self_triggers: int = 0
    captures: list[Capture] = field(default_factory=list)
    played_s: float = 0.0
    utterance_source: str | None = None
    timed_out: bool = False
    heard_own_fraction: float = 0.0
    """Self-test: the largest share of one round's playback that came back as self-triggers."""

    @property
    def ok(self) -> bool:
        return self.verdict == NO_LOOP

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["ok"] = self.ok
        return d


def validate(opts: ParrotOptions) -> None:
    if not 1 <= opts.rounds <= 100:
        raise UserError(f"--rounds {opts.rounds} is out of range", "use 1 to 100")
    if not 1.0 <= opts.timeout_s <= 3600.0:
        raise UserError(f"--timeout {opts.timeout_s:g} s is out of range", "use 1 to 3600 s")


def _devices(opts: ParrotOptions) -> tuple[str, str]:
    """The source and sink that will really be used (the defaults unless given)."""
    from pivoicectl.system.audio_server import AudioServer

    with AudioServer.connect() as server:
        info = server.info()
        sources = {n.name for n in server.sources()}
        sinks = {n.name for n in server.sinks()}
    source = opts.source or info.default_source
    sink = opts.sink or info.default_sink
    if source not in sources:
        raise UserError(f"no source named {source!r}", "list them with `pivoicectl devices`")
    if sink not in sinks:
        raise UserError(f"no sink named {sink!r}", "list them with `pivoicectl devices`")
    return source, sink


def known_utterance() -> tuple[np.ndarray, str]:
    """The self-test's line as int16 at RATE: espeak-ng if installed, else synthetic."""
    import tempfile
    from pathlib import Path

    from pivoicectl.dsp.signals import resample, scale_to_dbfs, speech_like
    from pivoicectl.system.recorder import espeak_wav
    from pivoicectl.system.wavfile import read_wav

    with tempfile.TemporaryDirectory(prefix="pivoicectl-parrot-") as tmp:
        path = Path(tmp) / "utterance.wav"
        if espeak_wav(SELF_TEST_TEXT, path):
            wav = read_wav(path)
            x, origin = resample(wav.mono(), wav.rate, RATE), "espeak-ng"
        else:
            x, origin = speech_like(2.5, RATE, SELF_TEST_LEVEL_DBFS), "synthetic"
    x = scale_to_dbfs(x, SELF_TEST_LEVEL_DBFS)
    return np.round(x * 32767).astype("<i2"), origin


class _Session:
    """One listening session: the capture, the detector, and what we played when."""

    def __init__(self, source: str, sink: str, grace_s: float) -> None:
        from pivoicectl.dsp.loopback import UtteranceDetector
        from pivoicectl.dsp.vad import VadSettings
        from pivoicectl.system.recorder import StreamCapture, StreamPlayer

        self.detector = UtteranceDetector(RATE, VadSettings(frame_ms=FRAME_MS))
        self.capture = StreamCapture(source, RATE, self.detector.frame_len)
        self.player = StreamPlayer(sink, RATE)
        self.grace_s = grace_s
        self.last_played: np.ndarray | None = None
        self.last_played_at_s = -1e9
        self.captures: list[Capture] = []
        self._players: list[Any] = []
        self.round = 0

    def play(self, pcm: np.ndarray) -> None:
        self.round += 1
        self.last_played = pcm
        self.last_played_at_s = self.detector.now_s
        self._players.append(self.player.play(pcm.tobytes()))

    def playing_until_s(self) -> float:
        if self.last_played is None:
            return -1e9
        return self.last_played_at_s + self.last_played.size / RATE + self.grace_s

    def next_utterance(self, deadline: float) -> Any:
        """Feed frames until an utterance completes (returned) or `deadline` (None)."""
        while time.monotonic() < deadline:
            frame = self.capture.get(timeout_s=0.2)
            if frame is None:
                if self.capture.frames.empty() and self._ended():
                    raise UserError("the capture stream ended", "is PipeWire running?", 1)
                continue
            utt = self.detector.feed(frame)
            if utt is not None:
                return utt
        return None

    def _ended(self) -> bool:
        return self.capture._proc.poll() is not None

    def judge(self, utt: Any) -> Capture:
        from pivoicectl.dsp.levels import dbfs
        from pivoicectl.dsp.loopback import check_self_trigger

        if self.last_played is not None:
            check = check_self_trigger(
                utt.samples, utt.speech_start_s, self.last_played, self.last_played_at_s, RATE,
                self.grace_s,
            )  # fmt: skip
            flags = (check.self_trigger, check.during_playback, check.correlates)
        else:
            flags = (False, False, False)
        cap = Capture(
            start_s=round(utt.speech_start_s, 3),
            duration_s=round(utt.duration_s, 3),
            level_dbfs=round(dbfs(utt.samples), 1),
            self_trigger=flags[0],
            during_playback=flags[1],
            correlates=flags[2],
            played_back=False,
            round=self.round,
        )
        self.captures.append(cap)
        return cap

    def close(self) -> None:
        for p in self._players:
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=5)
        self.capture.close()

    def drain_until(self, t_s: float, deadline: float) -> list[Capture]:
        """Keep listening until capture time `t_s`; judge what comes in meanwhile."""
        found = []
        while self.detector.now_s < t_s and time.monotonic() < deadline:
            frame = self.capture.get(timeout_s=0.2)
            if frame is None:
                continue
            utt = self.detector.feed(frame)
            if utt is not None:
                found.append(self.judge(utt))
        return found


def heard_own_fraction(captures: list[Capture], played_s: float) -> float:
    """Largest share of one round's playback that came back as self-triggers."""
    per_round: dict[int, float] = {}
    for c in captures:
        if c.self_trigger:
            per_round[c.round] = per_round.get(c.round, 0.0) + c.duration_s
    return min(1.0, max(per_round.values(), default=0.0) / played_s) if played_s > 0 else 0.0


def self_test(opts: ParrotOptions, progress: bool = True) -> ParrotResult:
    """Play a known utterance as the parrot's own reply; did the parrot hear it?"""
    validate(opts)
    source, sink = _devices(opts)
    pcm, origin = known_utterance()
    result = ParrotResult("self-test", NO_LOOP, source, sink, utterance_source=origin)
    deadline = time.monotonic() + opts.timeout_s
    session = _Session(source, sink, opts.grace_s)
    status = output.err().status("self-test: playing a known utterance …") if progress else None
    try:
        if status:
            status.start()
        session.drain_until(SETTLE_S, deadline)
        for _ in range(SELF_TEST_ROUNDS):
            session.play(pcm)
            session.drain_until(session.playing_until_s() + 0.5, deadline)
            if session.detector.in_utterance:  # still going: let it end (capped by timeout)
                session.drain_until(session.detector.now_s + 2.0, deadline)
        result.timed_out = time.monotonic() >= deadline
    finally:
        if status:
            status.stop()
        session.close()
    result.captures = session.captures
    result.played_s = round(SELF_TEST_ROUNDS * pcm.size / RATE, 3)
    result.self_triggers = sum(c.self_trigger for c in session.captures)
    result.heard_own_fraction = round(heard_own_fraction(session.captures, pcm.size / RATE), 3)
    result.verdict = LOOP if result.heard_own_fraction >= LOOP_FRACTION else NO_LOOP
    return result


def parrot(opts: ParrotOptions, progress: bool = True) -> ParrotResult:
    """Listen, repeat each utterance once, count self-triggers; stop after N rounds."""
    validate(opts)
    source, sink = _devices(opts)
    result = ParrotResult("parrot", NO_LOOP, source, sink)
    deadline = time.monotonic() + opts.timeout_s
    session = _Session(source, sink, opts.grace_s)
    c = output.err()
    if progress:
        c.print(output.plain(f"listening on {source}; say something (Ctrl-C to stop) …"))
    try:
        while result.rounds_played < opts.rounds:
            utt = session.next_utterance(deadline)
            if utt is None:
                result.timed_out = True
                break
            cap = session.judge(utt)
            if cap.self_trigger:
                if progress:
                    c.print(f"[bold red]heard myself[/] at {cap.start_s:.2f} s: not repeating it")
                continue
            session.play(utt.samples)
            cap.played_back = True
            result.rounds_played += 1
            result.played_s += round(utt.samples.size / RATE, 3)
            if progress:
                c.print(
                    f"round {result.rounds_played}: heard {cap.duration_s:.1f} s at "
                    f"{cap.level_dbfs:.0f} dBFS, playing it back"
                )
        # Listen through the last playback: an echo of it would be a self-trigger too.
        session.drain_until(session.playing_until_s() + 0.3, deadline)
    finally:
        session.close()
    result.captures = session.captures
    result.self_triggers = sum(cp.self_trigger for cp in session.captures)
    result.verdict = NO_LOOP if result.self_triggers == 0 else LOOP
    return result


def render(result: ParrotResult, json_out: bool) -> None:
    if json_out:
        output.print_json(result)
        return
    from rich.markup import escape

    c = output.out()
    c.print(
        f"{result.mode}: listening on {escape(result.source)}, playing on {escape(result.sink)}"
    )
    for cap in result.captures:
        what = "SELF-TRIGGER" if cap.self_trigger else ("repeated" if cap.played_back else "heard")
        c.print(
            f"  round {cap.round}  {cap.start_s:7.2f} s  {cap.duration_s:5.2f} s  "
            f"{cap.level_dbfs:6.1f} dBFS  {what}"
            f"{'  (during own playback)' if cap.during_playback else ''}"
            f"{'  (matches what was played)' if cap.correlates else ''}"
        )
    if result.mode == "self-test":
        c.print(
            f"heard back {100 * result.heard_own_fraction:.0f} % of its own line in the worst "
            f"round (a loop from {100 * LOOP_FRACTION:.0f} %), {result.self_triggers} "
            "self-trigger(s)"
        )
    if result.mode == "parrot":
        c.print(f"rounds: {result.rounds_played}, self-triggers: {result.self_triggers}")
        if result.timed_out:
            c.print("[dim]stopped at the timeout[/]")
    if result.ok:
        c.print(f"[green]{result.verdict}[/]")
    else:
        hint = (
            "the microphone hears the speaker: run `pivoicectl setup` and check "
            "`pivoicectl doctor` and `pivoicectl measure`"
        )
        c.print(f"[bold red]{result.verdict}[/]: {hint}")
