"""`pivoicectl run` end to end in the simulated room, against the local repeater server.

The real path: sim_air -> sim_mic -> echo canceller -> source_ec -> PortAudio `pulse` ->
WebSocket -> repeater -> WebSocket -> PortAudio -> sim_speaker -> echo path back into the
mic. The simulated person is a synthetic voiced signal (harmonics with syllable-rate
modulation and no pauses), so the answer's end at the speaker is sharp enough to compare
with the truncation point to within a few milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pivoicectl.dsp.levels import frame_levels_dbfs
from pivoicectl.realtime.edges.trace_file import read_trace
from pivoicectl.sim import instance
from pivoicectl.system.wavfile import write_wav
from tests.conftest import run_cli
from tests.integration.audio import start_record, stop_record, streams_of

RATE = 48_000
PREFIX_MS = 300  # server_vad prefix padding: the repeater's answer starts this much early


def voiced_wav(path: Path, seconds: float, f0: float = 140.0, level: float = 0.25) -> Path:
    """A vowel-like signal: 10 harmonics, vibrato, 4 Hz syllable modulation, 5 ms edges."""
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * np.cumsum(f0 + 15 * np.sin(2 * np.pi * 3 * t)) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 11))
    wave *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    wave *= level / np.max(np.abs(wave))
    edge = int(0.005 * RATE)
    wave[:edge] *= np.linspace(0, 1, edge)
    wave[-edge:] *= np.linspace(1, 0, edge)
    write_wav(path, wave, RATE)
    return path


def loud_frames(x: np.ndarray, threshold_dbfs: float = -45.0, frame_ms: float = 2.0):
    """Per `frame_ms` frame: is it above the threshold?"""
    return frame_levels_dbfs(x, int(RATE * frame_ms / 1000)) > threshold_dbfs


def heard_and_gaps_ms(x: np.ndarray, segment: tuple[float, float], frame_ms: float = 2.0):
    """Of a loud segment (seconds): how much was sound, and how much silence within it.

    The sound is what the speaker played of an answer; the silence is where it ran dry
    waiting for the next real-time chunk, which stretches the span without adding audio.
    """
    start, end = (round(t * RATE) for t in segment)
    heard_ms = float(np.sum(loud_frames(x[start:end], frame_ms=frame_ms))) * frame_ms
    return heard_ms, (segment[1] - segment[0]) * 1000 - heard_ms


def loud_segments(x: np.ndarray, threshold_dbfs: float = -45.0, frame_ms: float = 2.0):
    """(start_s, end_s) of runs of frames above the threshold, gaps < 150 ms merged."""
    n = int(RATE * frame_ms / 1000)
    loud = loud_frames(x, threshold_dbfs, frame_ms)
    segments: list[list[float]] = []
    for i in np.flatnonzero(loud):
        start, end = i * n / RATE, (i + 1) * n / RATE
        if segments and start - segments[-1][1] < 0.150:
            segments[-1][1] = end
        else:
            segments.append([start, end])
    return [tuple(s) for s in segments]


class RunProcess:
    """`pivoicectl run` in the room, with helpers to follow its trace."""

    def __init__(self, env: dict[str, str], trace: Path, *args: str) -> None:
        self.trace = trace
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pivoicectl", "run", "--trace", str(trace), "--json", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def records(self) -> list[dict]:
        try:
            return read_trace(self.trace)
        except (FileNotFoundError, json.JSONDecodeError):
            return []  # not written yet, or a line being written

    def wait_for(self, predicate, timeout_s: float, what: str) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for r in self.records():
                if predicate(r):
                    return r
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.kill()
        out, err = self.proc.communicate(timeout=10)
        pytest.fail(f"timed out waiting for {what}\nstdout:\n{out}\nstderr:\n{err}")

    def wait_for_answers(self, count: int, timeout_s: float) -> dict:
        """Until `count` answers have been created in this run; the last one's record."""
        return self.wait_for(
            lambda r: (
                r["type"] == "response_created"
                and sum(x["type"] == "response_created" for x in self.records()) >= count
            ),
            timeout_s,
            f"answer {count}",
        )

    def finish(self, timeout_s: float) -> dict:
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            pytest.fail(f"run did not finish\nstdout:\n{out}\nstderr:\n{err}")
        self.out, self.err = out, err
        assert self.proc.returncode == 0, (out, err)
        assert "Traceback" not in err, err
        return json.loads(out)


def _types(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["type"] == kind]


def _recv(records: list[dict], event_type: str) -> list[dict]:
    return [r for r in records if r["type"] == "recv" and r["event"]["type"] == event_type]


def _sent(records: list[dict], event_type: str) -> list[dict]:
    return [r for r in records if r["type"] == "send" and r["event"]["type"] == event_type]


def _play_later(env: dict[str, str], wav: Path, delay_s: float) -> threading.Thread:
    def go() -> None:
        time.sleep(delay_s)
        subprocess.run(["paplay", "-d", "sim_air", str(wav)], env=env, check=True, timeout=60)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["pulse", "portaudio"])
def test_barge_in_stops_the_answer_and_truncates_what_was_heard(room, tmp_path, backend):
    run_cli("setup", "--json", env=room.env, check=True)  # source_ec becomes the default
    question = voiced_wav(tmp_path / "question.wav", 11.5, f0=140)
    interruption = voiced_wav(tmp_path / "interruption.wav", 1.2, f0=200)
    trace = tmp_path / "trace.jsonl"
    speaker = start_record(room.env, "sim_speaker.monitor")
    try:
        run = RunProcess(
            room.env,
            trace,
            "--local",
            "--max-turns",
            "2",
            "--duration",
            "60",
            "--audio-backend",
            backend,
        )
        run.wait_for(lambda r: r["type"] == "session", 15, "session.created")
        time.sleep(0.5)  # let the repeater server's VAD learn the room's noise floor
        subprocess.run(["paplay", "-d", "sim_air", str(question)], env=room.env, check=True)
        created = run.wait_for(lambda r: r["type"] == "response_created", 5, "the answer")
        # Interrupt once the assistant has spoken 10 s (plus its 300 ms prefix).
        _play_later(room.env, interruption, 10.4).join(timeout=30)
        summary = run.finish(timeout_s=30)
    finally:
        audio = stop_record(speaker)
    records = read_trace(trace)

    # --- the trace holds the whole exchange ------------------------------------------
    types = [r["type"] for r in records]
    assert types[0] == "start" and types[-1] == "end"
    for kind in (
        "session",
        "speech_started",
        "speech_stopped",
        "response_created",
        "interruption",
        "user",
        "assistant",
        "turn",
        "response_done",
    ):
        assert kind in types, kind
    end = records[-1]
    assert end["reason"] == "2 turn(s) done"
    assert end["usage"]["total_tokens"] > 0
    assert [t["status"] for t in end["turns"]] == ["cancelled", "completed"]

    # --- no speech_started from the assistant's own voice ----------------------------
    started = _recv(records, "input_audio_buffer.speech_started")
    assert len(started) == 2, [r["t_s"] for r in started]  # the question, the interruption
    first, second = summary["turns"]
    spoke_s = started[1]["t_s"] - created["t_s"]
    assert spoke_s >= 10.0, spoke_s  # 10 s of assistant speech before the person spoke

    # --- barge-in: truncate sent, matches what was played -----------------------------
    assert summary["audio_backend"] == backend
    truncates = _sent(records, "conversation.item.truncate")
    assert len(truncates) == 1
    sent_ms = truncates[0]["event"]["audio_end_ms"]
    assert sent_ms == first["truncate_audio_end_ms"]
    # Handed to the device minus what it still buffered when playback was cut.
    assert summary["unheard_at_abort_ms"] > 0
    assert sent_ms == first["played_ms_at_interrupt"] - summary["unheard_at_abort_ms"]
    assert first["item_id"] == truncates[0]["event"]["item_id"]
    assert _recv(records, "conversation.item.truncated"), "the server rejected the truncate"
    assert not _sent(records, "response.cancel")  # server_vad cancels by itself
    assert first["interrupted"] and first["interrupt_latency_ms"] is not None
    assert first["received_ms_at_interrupt"] > sent_ms  # there was more to say

    # --- the answer stopped at the speaker --------------------------------------------
    segments = loud_segments(audio)
    assert len(segments) == 3, (
        segments,
        len(audio) / RATE,
    )  # the ready chime, answer 1 (cut short), answer 2
    assert segments[0][1] - segments[0][0] < 0.6
    segments = segments[1:]
    # The answer's audio that reached the speaker: its loud frames (the voice never
    # drops below -45 dBFS), not its span, which also holds any gaps where the speaker
    # ran dry waiting for the repeater's next real-time chunk (silence, not audio heard).
    heard_ms, gaps_ms = heard_and_gaps_ms(audio, segments[0])
    expected_ms = sent_ms - PREFIX_MS
    print(
        f"heard {heard_ms:.0f} ms ({max(gaps_ms, 0):.0f} ms of gaps), truncate minus prefix {expected_ms} ms"
    )
    assert abs(heard_ms - expected_ms) <= 40, (heard_ms, gaps_ms, sent_ms)
    assert heard_ms < 11_500 - 800  # well short of the whole question
    answer2_ms = (segments[1][1] - segments[1][0]) * 1000
    assert abs(answer2_ms - 1200) <= 150, answer2_ms  # the interruption, repeated whole
    assert second["interrupted"] is False


@pytest.mark.timeout(90)
def test_dropped_connection_reconnects_restores_the_session_and_carries_on(room, tmp_path):
    from pivoicectl.standin import LocalServerThread

    run_cli("setup", "--json", env=room.env, check=True)
    question = voiced_wav(tmp_path / "question.wav", 3.0, f0=140)
    again = voiced_wav(tmp_path / "again.wav", 1.5, f0=180)
    trace = tmp_path / "trace.jsonl"
    secret = "sk-test-DoNotLeak0123456789"
    env = {**room.env, "OPENAI_API_KEY": secret}
    with LocalServerThread() as server:
        run = RunProcess(
            env,
            trace,
            "--url",
            server.base_url,
            "--max-turns",
            "2",
            "--duration",
            "45",
            "--voice",
            "cedar",
            "--instructions",
            "Be a repeater.",
        )
        run.wait_for(lambda r: r["type"] == "session", 15, "session.created")
        time.sleep(0.5)
        subprocess.run(["paplay", "-d", "sim_air", str(question)], env=env, check=True)
        run.wait_for(lambda r: r["type"] == "response_created", 5, "the first answer")
        time.sleep(1.0)  # mid-answer
        assert server.drop_connections(abrupt=True) == 1
        run.wait_for(lambda r: r.get("connection") == 2, 10, "a second connection")
        run.wait_for(
            lambda r: (
                r["type"] == "recv"
                and r["event"]["type"] == "session.updated"
                and r["t_s"] > 0
                and len(_types(run.records(), "session")) == 2
            ),
            10,
            "the session restored",
        )
        time.sleep(0.5)
        subprocess.run(["paplay", "-d", "sim_air", str(again)], env=env, check=True)
        summary = run.finish(timeout_s=20)
        log = server.server.log

    records = read_trace(trace)
    assert secret not in trace.read_text() + run.out + run.err
    assert [c.outcome for c in log.connections] == ["accepted", "accepted"]
    assert all("[REDACTED]" in c.headers.get("Authorization", "") for c in log.connections)
    # Settings restored on the new connection: same session.update, audio flows again.
    updates = _sent(records, "session.update")
    assert len(updates) == 2 and updates[0]["event"] == {
        **updates[1]["event"],
        "event_id": updates[0]["event"]["event_id"],
    }
    assert updates[1]["event"]["session"]["audio"]["output"]["voice"] == "cedar"
    assert "input_audio_buffer.append" in log.types("in", connection_id=2)
    lost = _types(records, "disconnected")[0]
    assert "network drop" in lost["reason"] or "1006" in lost["reason"], lost
    assert _types(records, "reconnect_wait")
    assert summary["connections"] == 2 and summary["reconnects"] == 1
    first, second = summary["turns"]
    assert first["status"] == "disconnected"
    assert second["status"] == "completed" and second["audio_received_ms"] > 1000


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["pulse", "portaudio"])
def test_an_audio_server_restart_mid_conversation_is_survived(late_room, tmp_path, backend):
    """PipeWire, WirePlumber and pipewire-pulse restarted together (setup, an upgrade,
    a crash), WirePlumber late as on a slow Pi: run reopens its streams on the canceller
    and the next question is heard and answered."""
    room = late_room
    run_cli("setup", "--json", env=room.env, check=True)
    question = voiced_wav(tmp_path / "question.wav", 2.0, f0=140)
    again = voiced_wav(tmp_path / "again.wav", 1.5, f0=180)
    trace = tmp_path / "trace.jsonl"
    run = RunProcess(
        room.env,
        trace,
        *("--local", "--audio-backend", backend, "--max-turns", "2", "--duration", "90"),
    )
    run.wait_for(lambda r: r["type"] == "session", 15, "session.created")
    time.sleep(0.5)
    subprocess.run(["paplay", "-d", "sim_air", str(question)], env=room.env, check=True)
    run.wait_for_answers(1, 10)
    run.wait_for(lambda r: r["type"] == "turn", 15, "the first answer to end")
    run_cli("sim", "restart", env=room.env, check=True)
    run.wait_for(lambda r: r["type"] == "audio_lost", 10, "the loss noticed")
    back = run.wait_for(lambda r: r["type"] == "audio_back", 30, "the audio reopened")
    # Reopened on the canceller, not on the raw mic that is the default for a moment.
    assert streams_of(room.env, run.proc.pid)["sources"] == ["source_ec"]
    time.sleep(0.5)
    subprocess.run(["paplay", "-d", "sim_air", str(again)], env=room.env, check=True)
    answer = run.wait_for_answers(2, 10)
    summary = run.finish(timeout_s=30)
    records = read_trace(trace)
    assert answer["t_s"] - back["t_s"] < 5.0 + 1.5 + 0.5  # the question itself takes 2 s
    assert summary["connections"] == 1  # the service session stayed up meanwhile
    first, second = summary["turns"][:2]
    assert first["status"] == "completed"
    assert second["status"] == "completed" and second["audio_received_ms"] > 500
    assert "waiting for it to come back" in run.err and "listening again" in run.err
    assert not _types(records, "audio_gone")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["pulse", "portaudio"])
def test_an_audio_server_that_stays_away_ends_run_with_one_line_and_exit_1(room, tmp_path, backend):
    trace = tmp_path / "trace.jsonl"
    run = RunProcess(
        room.env,
        trace,
        *("--local", "--audio-backend", backend, "--audio-timeout", "2", "--duration", "60"),
    )
    run.wait_for(lambda r: r["type"] == "session", 15, "session.created")
    instance.stop_daemons(room.paths)  # and it does not come back
    try:
        out, err = run.proc.communicate(timeout=30)
    finally:
        run.proc.kill()
    assert run.proc.returncode == 1, (out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "did not come back within 2 s" in lines[0], err
    assert "Traceback" not in err
    assert _types(read_trace(trace), "audio_gone")


@pytest.mark.timeout(90)
def test_run_says_at_start_when_the_rooms_pipewire_has_no_realtime_priority(room, tmp_path):
    """Without realtime a busy machine makes the canceller leak; run says so once at
    start (and points at doctor), and says nothing when PipeWire has it."""
    import os

    from pivoicectl.system.scheduling import thread_scheduling

    note = "PipeWire runs without realtime priority"
    pid = instance.read_instance(room.paths)["pids"]["pipewire"]
    threads = thread_scheduling(pid)
    if any(t.realtime for t in threads):  # module-rt got it where the user may (root)
        quiet = run_cli("run", "--local", "--duration", "1", env=room.env, check=True)
        assert note not in quiet.stdout + quiet.stderr, quiet.stdout
    for t in threads:  # what a Pi without rtkit or rtprio limits runs
        os.sched_setscheduler(t.tid, os.SCHED_OTHER, os.sched_param(0))
    trace = tmp_path / "trace.jsonl"
    told = run_cli(
        *("run", "--local", "--duration", "1", "--trace", str(trace)), env=room.env, check=True
    )
    shown = told.stdout + told.stderr
    assert shown.count(note) == 1 and "`pivoicectl doctor` says how" in shown, shown
    assert [r for r in read_trace(trace) if r["type"] == "warning" and note in r["text"]]
