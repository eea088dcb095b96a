"""Local barge-in and the echo guard: pure decisions on synthetic PCM, no device."""

from __future__ import annotations

import numpy as np
import pytest

from pivoicectl.errors import UserError
from pivoicectl.realtime.mic.barge_in import BargeInDetector, BargeInSettings
from pivoicectl.realtime.mic.echo_guard import EchoGuard, EchoGuardSettings
from pivoicectl.realtime.mic.mic_path import MicPath, OnsetMuteSettings
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.conversation import Conversation, Record, Send
from pivoicectl.realtime.session.playback import (
    PlaybackQueue,
    PlayedSpan,
    PlayReport,
    TruncationMargins,
)
from pivoicectl.realtime.settings import merge_run_settings

BLOCK_MS = 20
RATE = ev.SAMPLE_RATE_HZ


def tone(level_dbfs: float, ms: int = BLOCK_MS, f_hz: float = 300.0) -> bytes:
    n = ev.ms_to_samples(ms)
    t = np.arange(n) / RATE
    amp = 10 ** (level_dbfs / 20) * np.sqrt(2)
    return (amp * np.sin(2 * np.pi * f_hz * t) * 32767).astype("<i2").tobytes()


def quiet(ms: int = BLOCK_MS) -> bytes:
    rng = np.random.default_rng(1)
    return (rng.standard_normal(ev.ms_to_samples(ms)) * 3).astype("<i2").tobytes()  # ~-80 dBFS


def feed_blocks(det: BargeInDetector, blocks, t0: float, playing: bool):
    """Feed 20 ms blocks; return the time of the first trigger (or None) and the end time."""
    t, fired_at = t0, None
    for pcm in blocks:
        t += BLOCK_MS / 1000
        if det.feed(pcm, t, playing) and fired_at is None:
            fired_at = t
    return fired_at, t


# --- the detector ------------------------------------------------------------------------


def test_speech_over_the_assistant_triggers_after_threshold_frames_once():
    det = BargeInDetector(BargeInSettings(lockout_s=0.5))
    _, t = feed_blocks(det, [quiet()] * 50, 0.0, playing=False)  # the room's floor
    _, t = feed_blocks(det, [quiet()] * 30, t, playing=True)  # 0.6 s of answer: lockout over
    onset = t
    fired, t = feed_blocks(det, [tone(-25)] * 20, t, playing=True)
    assert fired is not None
    # 2 speech frames of 30 ms = 60 ms, plus at most one frame and one block of slack.
    assert fired - onset <= 0.06 + 0.03 + 0.02 + 1e-9, fired - onset
    assert det.triggers == 1  # once per answer, however long the person talks


def test_no_trigger_when_nothing_plays_or_during_the_lockout():
    det = BargeInDetector(BargeInSettings(lockout_s=0.5, grace_period_s=0.2))
    _, t = feed_blocks(det, [quiet()] * 50, 0.0, playing=False)
    fired, t = feed_blocks(det, [tone(-25)] * 20, t, playing=False)  # a normal turn
    assert fired is None
    _, t = feed_blocks(det, [quiet()] * 50, t, playing=False)  # floor settles again
    fired, t = feed_blocks(det, [tone(-25)] * 20, t, playing=True)  # 0.4 s < lockout
    assert fired is None


def test_grace_period_keeps_listening_after_the_audio_ends_then_stops():
    settings = BargeInSettings(lockout_s=0.0, grace_period_s=0.5)
    det = BargeInDetector(settings)
    _, t = feed_blocks(det, [quiet()] * 50, 0.0, playing=False)
    _, t = feed_blocks(det, [quiet()] * 10, t, playing=True)
    fired, _ = feed_blocks(det, [tone(-25)] * 10, t + 0.0, playing=False)  # within grace
    assert fired is not None

    det = BargeInDetector(settings)
    _, t = feed_blocks(det, [quiet()] * 50, 0.0, playing=False)
    _, t = feed_blocks(det, [quiet()] * 10, t, playing=True)
    _, t = feed_blocks(det, [quiet()] * 40, t, playing=False)  # 0.8 s: grace is over
    fired, _ = feed_blocks(det, [tone(-25)] * 10, t, playing=False)
    assert fired is None


def test_a_new_answer_rearms_the_detector():
    det = BargeInDetector(BargeInSettings(lockout_s=0.0, grace_period_s=0.1))
    _, t = feed_blocks(det, [quiet()] * 50, 0.0, playing=False)
    fired, t = feed_blocks(det, [tone(-25)] * 10, t, playing=True)
    assert fired is not None
    _, t = feed_blocks(det, [quiet()] * 50, t, playing=False)
    fired, t = feed_blocks(det, [tone(-25)] * 10, t, playing=True)
    assert fired is not None and det.triggers == 2


def test_bad_tuning_is_refused():
    with pytest.raises(ValueError, match="threshold_frames = 6 is out of range"):
        BargeInSettings(threshold_frames=6, window_frames=5)
    with pytest.raises(ValueError, match="frame_ms = 5 is out of range"):
        BargeInSettings(frame_ms=5)
    with pytest.raises(ValueError, match="mode = 'loud' is unknown"):
        EchoGuardSettings(mode="loud")


# --- the echo guard --------------------------------------------------------------------


def play_ref(guard: EchoGuard, t: float, level: float) -> None:
    guard.reference(t, level)


def test_gate_mutes_while_playing_and_for_the_tail():
    guard = EchoGuard(EchoGuardSettings(mode="gate", tail_ms=300))
    assert guard.feed(b"a" * 960, 0.0, playing=False).send == (b"a" * 960,)
    assert guard.feed(b"b" * 960, 0.02, playing=True).send == ()
    assert guard.feed(b"c" * 960, 0.20, playing=False).send == ()  # the tail
    assert guard.feed(b"d" * 960, 0.40, playing=False).send == (b"d" * 960,)
    assert guard.blocks_gated == 2


def test_off_passes_everything():
    guard = EchoGuard(EchoGuardSettings(mode="off"))
    assert guard.feed(b"x", 0.0, playing=True).send == (b"x",)


def run_guard(guard: EchoGuard, mic_blocks, t0: float, ref_level: float):
    """Playback at `ref_level` throughout; return (decisions, end time)."""
    t, out = t0, []
    for pcm in mic_blocks:
        play_ref(guard, t, ref_level)
        t += BLOCK_MS / 1000
        out.append(guard.feed(pcm, t, playing=True))
    return out, t


def test_vad_gate_ignores_the_echo_and_learns_the_echo_return_loss():
    guard = EchoGuard(EchoGuardSettings(mode="vad-gate"))
    # Assistant at -20 dBFS, its echo at the mic -22 dBFS (ERL 2 dB, a loud speaker).
    decisions, _ = run_guard(guard, [tone(-22, f_hz=200)] * 200, 0.0, -20.0)
    assert not any(d.interrupt or d.send for d in decisions)
    assert abs(guard.erl_db - 2.0) < 0.5


def test_vad_gate_opens_on_a_louder_person_and_sends_the_pre_roll():
    guard = EchoGuard(EchoGuardSettings(mode="vad-gate", pre_roll_ms=300, double_talk_blocks=3))
    _, t = run_guard(guard, [tone(-40, f_hz=200)] * 100, 0.0, -20.0)  # ERL 20 dB learned
    assert abs(guard.erl_db - 20.0) < 0.5
    person = [tone(-20, f_hz=400)] * 5
    decisions, t = run_guard(guard, person, t, -20.0)
    fired = [i for i, d in enumerate(decisions) if d.interrupt]
    assert fired == [2]  # the third loud block
    opened = decisions[2]
    # The pre-roll: 300 ms of mic audio, ending with the three person blocks.
    assert len(opened.send) == 15 and opened.send[-3:] == tuple(person[:3])
    assert decisions[3].send == (person[3],)  # open until the next answer starts
    guard.feed(quiet(), t + 0.5, playing=False)
    assert guard.feed(quiet(), t + 1.0, playing=True).send == ()  # a new answer: shut


def test_vad_gate_with_erl_from_measure():
    guard = EchoGuard(EchoGuardSettings(mode="vad-gate", erl_db=30.0))
    decisions, _ = run_guard(guard, [tone(-35)] * 10, 0.0, -20.0)  # 15 dB above echo
    assert any(d.interrupt for d in decisions)


# --- composed on the conversation --------------------------------------------------------


def make_conversation(barge_in: str = "local") -> Conversation:
    playback = PlaybackQueue(TruncationMargins(received_margin_ms=0))
    return Conversation(ev.SessionConfig(), playback, barge_in=barge_in)


def evt(event_type: str, **fields) -> ev.ServerEvent:
    return ev.parse_server_event({"type": event_type, **fields})


def start_answer(conv: Conversation) -> None:
    conv.connected(0.0)
    conv.handle(evt("session.created", session={"id": "s"}), 0.0)
    conv.handle(evt("response.created", response={"id": "resp_1"}), 1.0)
    pcm = b"\x01\x00" * ev.ms_to_samples(2000)
    conv.handle(
        evt(
            "response.output_audio.delta",
            response_id="resp_1",
            item_id="item_a",
            delta=ev.encode_audio(pcm),
        ),
        1.0,
    )
    block = ev.ms_to_samples(10)
    for i in range(50):  # 500 ms played
        _, acct = conv.playback.pull(block)
        conv.played(PlayReport(1.0 + i * 0.01, 1.02 + i * 0.01, acct.spans, 0))


def test_local_interrupt_flushes_truncates_and_cancels_and_the_server_only_catches_up():
    conv = make_conversation()
    start_answer(conv)
    actions = conv.local_interrupt(2.0)
    sent = [a.event["type"] for a in actions if isinstance(a, Send)]
    assert sent == ["conversation.item.truncate", "response.cancel"]
    truncate = next(a.event for a in actions if isinstance(a, Send))
    assert truncate["audio_end_ms"] == 500
    assert conv.playback.queued_samples == 0
    records = [a.record for a in actions if isinstance(a, Record)]
    assert records[0]["type"] == "local_barge_in"
    assert any(r.get("source") == "local_vad" for r in records)
    # The service's own speech_started arrives later: nothing is sent twice.
    later = conv.handle(evt("input_audio_buffer.speech_started", item_id="u2"), 2.3)
    assert not [a for a in later if isinstance(a, Send)]
    assert conv.turns[0].interrupted_s == 2.0


def test_barge_in_off_ignores_speech_started():
    conv = make_conversation("off")
    start_answer(conv)
    actions = conv.handle(evt("input_audio_buffer.speech_started", item_id="u2"), 2.0)
    assert not [a for a in actions if isinstance(a, Send)]
    assert conv.playback.queued_samples > 0


def test_mic_path_composes_guard_and_detector():
    assert not MicPath("server", onset_settings=OnsetMuteSettings(mute_ms=0)).active
    assert MicPath("server").active  # the answer-onset mute is on by default
    assert MicPath("local").detector is not None
    guarded = MicPath("local", guard_settings=EchoGuardSettings(mode="vad-gate"))
    assert guarded.detector is None  # the guard owns the decision without a canceller
    path = MicPath("server", guard_settings=EchoGuardSettings(mode="gate"))
    path.played(PlayReport(0.0, 0.0, (), 0, level_dbfs=-20.0))
    assert path.feed(b"ab", 0.01, playing=True).send == ()


def _report(t: float, level: float, audio: bool = True, response: str = "resp") -> PlayReport:
    spans = (PlayedSpan("item", response, 480),) if audio else ()
    return PlayReport(t, t, spans, 0 if audio else 480, level_dbfs=level)


def test_onset_mute_silences_the_mic_as_an_answer_turns_loud_after_quiet():
    path = MicPath("server", onset_settings=OnsetMuteSettings(mute_ms=300))
    mic = b"\x01\x02" * 480
    assert path.feed(mic, 0.0, playing=False).send == (mic,)  # nothing played yet
    path.played(_report(1.00, -60.0))  # quiet playback (the answer's prefix): no onset
    assert path.feed(mic, 1.05, playing=True).send == (mic,)
    path.played(_report(1.10, -25.0))  # the answer turns loud
    assert path.feed(mic, 1.15, playing=True).send == (bytes(len(mic)),)
    assert path.feed(mic, 1.39, playing=True).send == (bytes(len(mic)),)
    for k in range(1, 40):  # loud on and on: one onset only
        path.played(_report(1.10 + 0.02 * k, -25.0))
    assert path.feed(mic, 1.41, playing=True).send == (mic,)
    assert path.onset.blocks_muted == 2
    path.played(_report(2.5, -25.0))  # 0.72 s after the last loud block: same answer
    assert path.feed(mic, 2.55, playing=True).send == (mic,)
    path.played(_report(4.0, -25.0))  # after 1.5 s of quiet: a new answer, muted again
    assert path.feed(mic, 4.05, playing=True).send == (bytes(len(mic)),)
    path.played(_report(4.5, -25.0, response="resp_2"))  # another answer, 0.5 s on: too
    assert path.feed(mic, 4.55, playing=True).send == (bytes(len(mic)),)
    assert path.feed(mic, 4.81, playing=True).send == (mic,)


def test_onset_mute_settings_are_checked():
    with pytest.raises(ValueError, match="mute_ms = 5000 is out of range"):
        OnsetMuteSettings(mute_ms=5000)
    with pytest.raises(UserError, match="--onset-mute-ms -1 is out of range"):
        merge_run_settings({"onset_mute_ms": -1}, {}, {})


# --- settings ----------------------------------------------------------------------------


def test_new_run_settings_merge_from_env_and_file(tmp_path):
    from pivoicectl.realtime.settings import env_values, load_run_settings, read_config_file

    config = tmp_path / "config.toml"
    config.write_text(
        '[run]\nbarge_in = "local"\nbarge_in_threshold = 4\nbarge_in_window_size = 6\n'
        'barge_in_lockout_seconds = 1.0\necho_guard = "vad-gate"\necho_erl_db = 12\n'
        'ptt = "key"\ntoken_url = "http://127.0.0.1:1/session"\n'
    )
    env = {"PIVOICECTL_BARGE_IN_GRACE_PERIOD_SECONDS": "2.5", "PIVOICECTL_ECHO_TAIL_MS": "400"}
    assert env_values(env)["echo_tail_ms"] == 400
    assert read_config_file(config)["echo_erl_db"] == 12.0
    s = load_run_settings({"barge_in_threshold": 5}, config, env)
    tuning = s.barge_in
    assert (tuning.threshold_frames, tuning.window_frames, tuning.lockout_s) == (5, 6, 1.0)
    assert tuning.grace_period_s == 2.5
    guard = s.echo_guard
    assert (guard.mode, guard.tail_ms, guard.erl_db) == ("vad-gate", 400, 12.0)
    assert s.session_config().turn_detection == "none"  # push-to-talk
    assert s.service.token_url == "http://127.0.0.1:1/session"


def test_barge_in_off_asks_the_service_not_to_interrupt_and_urls_are_checked(tmp_path):
    settings = merge_run_settings({"barge_in": "off"}, {}, {})
    payload = settings.session_config().turn_detection_payload()
    assert payload is not None and payload["interrupt_response"] is False
    with pytest.raises(UserError, match="--trace-url 'ftp://x' is not an HTTP URL"):
        merge_run_settings({"trace_url": "ftp://x"}, {}, {})
    with pytest.raises(UserError, match="--ptt 'foot' is unknown"):
        merge_run_settings({"ptt": "foot"}, {}, {})
    with pytest.raises(UserError, match="--barge-in-threshold 9 is out of range"):
        merge_run_settings({"barge_in_threshold": 9}, {}, {})
