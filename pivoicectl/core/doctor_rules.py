"""Doctor's verdicts: pure rules from gathered facts to checks with exact fixes.

Gathering (sockets, pulsectl, files, loginctl) happens in `commands/doctor.py`; keeping
the rules pure lets every verdict be unit-tested from a hand-made `Facts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pivoicectl.core import echo_config
from pivoicectl.core.echo_config import SINK_NAME, SOURCE_NAME
from pivoicectl.core.realtime_rule import DaemonScheduling, realtime_verdict

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Facts:
    """Everything doctor looked at; None means 'could not be found out'."""

    pipewire_socket: str | None = None
    pipewire_reachable: bool = False
    pulse_error: str | None = None
    server_name: str | None = None
    pipewire_version: str | None = None
    wireplumber_running: bool | None = None
    config_path: str = ""
    config_text: str | None = None
    sources: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)
    ec_capture_from: str | None = None
    """The source the echo canceller's capture stream actually reads from."""
    default_source: str | None = None
    default_sink: str | None = None
    persisted: dict[str, str] = field(default_factory=dict)
    persisted_file: str = ""
    portaudio_error: str | None = None
    portaudio_names: list[str] = field(default_factory=list)
    portaudio_default_input: str | None = None
    systemd_user: bool = False
    linger: bool | None = None
    user: str = ""
    api_key_present: bool = False
    api_key_where: str = ""
    """Where the key was found ("OPENAI_API_KEY", a file), for the report (never the key)."""
    exposed_key_files: list[str] = field(default_factory=list)
    """Files holding the key that other users can read."""
    service_installed: bool = False
    service_enabled: str = ""
    """systemd's UnitFileState of pivoicectl.service ("enabled", "disabled", ...)."""
    service_active: str = ""
    service_result: str = ""
    service_status: str = ""
    restart_command: str = "systemctl --user restart pipewire pipewire-pulse wireplumber"
    last_measure: dict | None = None
    """The last `pivoicectl measure` result (paths.last_measure_file), if any."""
    audio_daemons: list[DaemonScheduling] | None = None
    """The running pipewire and pipewire-pulse processes; None: not looked for."""
    rtkit_installed: bool | None = None
    user_groups: list[str] = field(default_factory=list)
    """The groups the user is configured in (/etc/group), not those of this process."""
    pipewire_group_limits: bool = False
    """/etc/security/limits.d/25-pw-rlimits.conf (Debian's pipewire-bin) is there and the
    pipewire group exists: joining the group grants rtprio 95."""

    @property
    def pulse_ok(self) -> bool:
        return self.pulse_error is None and "PipeWire" in (self.server_name or "")

    @property
    def uses_sink(self) -> bool:
        """The 0.3 template: apps must play into sink_ec, so it must be the default sink."""
        return bool(self.config_text and "monitor.mode = true" not in self.config_text)


def _skip(id_: str, title: str, needs: str) -> Check:
    return Check(id_, title, SKIP, f"needs {needs} to pass first")


_BYPASS = {
    "source": "apps record the raw mic, with echo",
    "sink": "its sound bypasses the canceller",
}


def _default_check(
    f: Facts, kind: str, want: str, present: list[str], current: str | None
) -> Check:
    id_ = f"default-{kind}"
    title = f"Default {kind} is {want}" + (" (PipeWire 0.3)" if kind == "sink" else "")
    if not f.pulse_ok:
        return _skip(id_, title, "pulse-compat")
    if want not in present:
        return _skip(id_, title, "echo-cancel-loaded")
    if current == want:
        return Check(id_, title, PASS, f"default {kind}: {want}")
    return Check(
        id_,
        title,
        FAIL,
        f"default {kind} is {current}: {_BYPASS[kind]}",
        f"pactl set-default-{kind} {want}   (or: pivoicectl doctor --fix)",
    )


GUARD_OFF_MIN_ERLE_DB = 25.0
"""From `measure`'s default verdict: above it the residual echo sits under the VAD floor."""
GUARD_VAD_GATE_MIN_ERLE_DB = 10.0
"""Below it the mic path is close to raw: only a plain gate keeps the assistant quiet."""


def _echo_guard_check(m: dict | None) -> Check:
    t = "Echo guard for `run`, from the last measurement"
    if not m:
        return Check("echo-guard", t, SKIP, "no measurement yet: run `pivoicectl measure`")
    erle = float(m.get("erle_db", 0.0))
    when = m.get("time", "?")
    out = (m.get("nodes") or {}).get("output", "?")
    if out != SOURCE_NAME:
        return Check(
            "echo-guard",
            t,
            WARN,
            f"measured on {out}, not {SOURCE_NAME} ({when}): no echo canceller in the path",
            "pivoicectl setup; pivoicectl measure. Meanwhile: pivoicectl run --echo-guard gate",
        )
    if erle >= GUARD_OFF_MIN_ERLE_DB:
        return Check(
            "echo-guard",
            t,
            PASS,
            f"ERLE {erle:.1f} dB on {when}: full duplex, no guard needed (--echo-guard off)",
        )
    mode = "vad-gate" if erle >= GUARD_VAD_GATE_MIN_ERLE_DB else "gate"
    return Check(
        "echo-guard",
        t,
        WARN,
        f"ERLE only {erle:.1f} dB on {when} (ERL {m.get('erl_db', '?')} dB): the assistant's "
        "own voice may interrupt it",
        f"pivoicectl run --echo-guard {mode}   (and move the mic away from the speaker)",
    )


def evaluate(f: Facts) -> list[Check]:
    checks: list[Check] = []
    add = checks.append

    # --- pipewire-running
    t = "PipeWire daemon"
    if f.pipewire_reachable:
        add(Check("pipewire-running", t, PASS, f"listening on {f.pipewire_socket}"))
    else:
        add(
            Check(
                "pipewire-running",
                t,
                FAIL,
                f"no PipeWire at {f.pipewire_socket or '(XDG_RUNTIME_DIR is not set)'}",
                "systemctl --user enable --now pipewire pipewire-pulse wireplumber",
            )
        )

    # --- pulse-compat
    t = "PulseAudio compatibility (pipewire-pulse)"
    if f.pulse_error:
        add(
            Check(
                "pulse-compat",
                t,
                FAIL,
                f.pulse_error,
                "sudo apt-get install pipewire-pulse && "
                "systemctl --user enable --now pipewire-pulse",
            )
        )
    elif not f.pulse_ok:
        add(
            Check(
                "pulse-compat",
                t,
                FAIL,
                f"the server is {f.server_name!r}, not PipeWire",
                "replace PulseAudio: sudo apt-get install pipewire-pulse wireplumber, then reboot",
            )
        )
    else:
        add(Check("pulse-compat", t, PASS, f"{f.server_name}"))

    # --- wireplumber
    t = "WirePlumber session manager"
    if not f.pulse_ok:
        add(_skip("wireplumber", t, "pulse-compat"))
    elif f.wireplumber_running:
        add(Check("wireplumber", t, PASS, "connected"))
    else:
        add(
            Check(
                "wireplumber",
                t,
                FAIL,
                "not connected: nothing links streams or restores the default source",
                "systemctl --user enable --now wireplumber",
            )
        )

    # --- echo-cancel-config
    t = "Echo-cancel config file"
    pins = echo_config.pinned_devices(f.config_text) if f.config_text else None
    if f.config_text is None:
        add(
            Check(
                "echo-cancel-config",
                t,
                FAIL,
                f"{f.config_path} does not exist",
                "pivoicectl setup",
            )
        )
    elif "libpipewire-module-echo-cancel" not in f.config_text:
        add(
            Check(
                "echo-cancel-config",
                t,
                FAIL,
                f"{f.config_path} does not load libpipewire-module-echo-cancel",
                "pivoicectl setup (it backs up the current file)",
            )
        )
    elif pins and f.pulse_ok and (pins[0] not in f.sources or pins[1] not in f.sinks):
        gone = pins[0] if pins[0] not in f.sources else pins[1]
        add(
            Check(
                "echo-cancel-config",
                t,
                FAIL,
                f"it pins {gone}, which does not exist now: PipeWire unloads the echo "
                "canceller when a pinned device is missing",
                f"plug the device back in and run `{f.restart_command}`, or pick another: "
                "pivoicectl setup --mic NODE --speaker NODE",
            )
        )
    elif not echo_config.written_by_pivoicectl(f.config_text):
        add(
            Check(
                "echo-cancel-config",
                t,
                WARN,
                f"{f.config_path} loads echo-cancel but was not written by pivoicectl",
                "pivoicectl setup --dry-run (shows what pivoicectl would write)",
            )
        )
    else:
        pinned = f" (mic {pins[0]}, speaker {pins[1]})" if pins else " (follows the defaults)"
        add(Check("echo-cancel-config", t, PASS, f"{f.config_path}{pinned}"))

    # --- echo-cancel-loaded
    t = "Echo canceller loaded (source_ec)"
    if not f.pulse_ok:
        add(_skip("echo-cancel-loaded", t, "pulse-compat"))
    elif SOURCE_NAME in f.sources and pins and f.ec_capture_from not in (None, pins[0]):
        add(
            Check(
                "echo-cancel-loaded",
                t,
                FAIL,
                f"{SOURCE_NAME} exists but cancels echo on {f.ec_capture_from}, not on the "
                f"pinned mic {pins[0]}",
                f"plug {pins[0]} in and run `{f.restart_command}`, or: pivoicectl setup --mic NODE",
            )
        )
    elif SOURCE_NAME in f.sources:
        src = f" (capturing {f.ec_capture_from})" if f.ec_capture_from else ""
        add(Check("echo-cancel-loaded", t, PASS, f"{SOURCE_NAME} exists{src}"))
    elif f.config_text is None:
        add(
            Check(
                "echo-cancel-loaded", t, FAIL, f"no {SOURCE_NAME} and no config", "pivoicectl setup"
            )
        )
    else:
        add(
            Check(
                "echo-cancel-loaded",
                t,
                FAIL,
                f"{SOURCE_NAME} is missing although {f.config_path} exists: PipeWire was not "
                "restarted, or the module unloaded itself (a pinned device went away)",
                f"{f.restart_command}; if it stays missing: pivoicectl setup --mic NODE",
            )
        )

    # --- default-source, and default-sink (0.3 template only: apps must play into sink_ec)
    add(_default_check(f, "source", SOURCE_NAME, f.sources, f.default_source))
    if f.uses_sink:
        add(_default_check(f, "sink", SINK_NAME, f.sinks, f.default_sink))
    else:
        add(
            Check(
                "default-sink",
                "Default sink is sink_ec (PipeWire 0.3)",
                SKIP,
                "not needed: the config uses the speaker's monitor",
            )
        )

    # --- default-persisted
    t = "Default source survives a reboot"
    saved = f.persisted.get("default.configured.audio.source")
    if not f.pulse_ok:
        add(_skip("default-persisted", t, "pulse-compat"))
    elif SOURCE_NAME not in f.sources:
        add(_skip("default-persisted", t, "echo-cancel-loaded"))
    elif saved == SOURCE_NAME:
        add(Check("default-persisted", t, PASS, f"WirePlumber saved it in {f.persisted_file}"))
    else:
        where = f"saved {saved}" if saved else "saved no default source"
        add(
            Check(
                "default-persisted",
                t,
                WARN if saved is None else FAIL,
                f"WirePlumber {where} in {f.persisted_file}: after a reboot the default "
                + ("is chosen by priority" if saved is None else f"goes back to {saved}"),
                f"pactl set-default-source {SOURCE_NAME}   (or: pivoicectl doctor --fix)",
            )
        )

    # --- portaudio-pulse
    t = "PortAudio records through PipeWire"
    routed = [n for n in f.portaudio_names if n.split(" ")[0] in ("pulse", "pipewire")]
    if f.portaudio_error:
        add(
            Check(
                "portaudio-pulse",
                t,
                FAIL,
                f.portaudio_error,
                "sudo apt-get install libportaudio2 libasound2-plugins pipewire-alsa",
            )
        )
    elif not routed:
        add(
            Check(
                "portaudio-pulse",
                t,
                FAIL,
                "PortAudio has no 'pulse' or 'pipewire' device: Python apps bypass source_ec",
                "sudo apt-get install libasound2-plugins pipewire-alsa",
            )
        )
    else:
        add(Check("portaudio-pulse", t, PASS, f"devices: {', '.join(routed)}"))

    # --- headless-linger
    t = "Audio survives logout (systemd linger)"
    if not f.systemd_user:
        add(Check("headless-linger", t, SKIP, "no systemd user manager here"))
    elif f.linger:
        add(Check("headless-linger", t, PASS, f"linger is on for {f.user}"))
    else:
        stops = "PipeWire stops when the last session (e.g. SSH) ends"
        if f.service_installed:
            stops += "; so does the assistant, and it does not start at boot"
        add(
            Check(
                "headless-linger",
                t,
                WARN,
                f"linger is off for {f.user}: {stops}",
                f"sudo loginctl enable-linger {f.user}",
            )
        )

    add(_service_check(f))

    add(_realtime_check(f))

    # --- echo-guard: which `run --echo-guard` mode the measured cancellation calls for
    add(_echo_guard_check(f.last_measure))

    # --- api-key (never show any part of it)
    t = "OpenAI API key"
    if f.exposed_key_files:
        where = f.exposed_key_files[0]
        add(
            Check(
                "api-key",
                t,
                WARN,
                f"{where} holds the API key and other users can read it",
                f"chmod 600 {where}",
            )
        )
    elif f.api_key_present:
        add(Check("api-key", t, PASS, f"set ({f.api_key_where or 'OPENAI_API_KEY'})"))
    else:
        add(
            Check(
                "api-key",
                t,
                WARN,
                "OPENAI_API_KEY is not set: `pivoicectl run` needs it (`run --local` does not)",
                "export OPENAI_API_KEY=... (or api_key in the [run] table of "
                "~/.config/pivoicectl/config.toml)",
            )
        )
    return checks


def _realtime_check(f: Facts) -> Check:
    id_, t = "pipewire-realtime", "PipeWire runs with realtime priority"
    if not f.pipewire_reachable:
        return _skip(id_, t, "pipewire-running")
    return Check(
        id_,
        t,
        *realtime_verdict(
            f.audio_daemons or [],
            rtkit_installed=bool(f.rtkit_installed),
            user=f.user,
            user_groups=f.user_groups,
            pipewire_group_limits=f.pipewire_group_limits,
            restart_command=f.restart_command,
        ),
    )


def _service_check(f: Facts) -> Check:
    """The boot service, when `pivoicectl service install` put one there."""
    id_, t = "assistant-service", "Assistant runs at boot (pivoicectl.service)"
    unit = "pivoicectl.service"
    if not f.service_installed:
        return Check(id_, t, SKIP, "not installed (`pivoicectl service install` does it)")
    if not f.systemd_user:
        return Check(id_, t, WARN, "installed, but no systemd user manager runs here")
    if f.service_enabled != "enabled":
        return Check(
            id_,
            t,
            FAIL,
            f"installed but {f.service_enabled or 'not enabled'}: it will not start at boot",
            f"systemctl --user enable --now {unit}",
        )
    if f.service_active == "failed":
        why = f" ({f.service_result})" if f.service_result else ""
        return Check(
            id_,
            t,
            FAIL,
            f"it failed{why}; `pivoicectl service status` shows why",
            f"systemctl --user restart {unit}",
        )
    if f.service_active not in ("active", "activating", "reloading"):
        return Check(
            id_,
            t,
            FAIL,
            f"enabled but {f.service_active or 'not running'}",
            f"systemctl --user start {unit}",
        )
    status = f": {f.service_status}" if f.service_status else ""
    return Check(id_, t, PASS, f"{f.service_active}{status}")


SAFE_FIXES = ("default-source", "default-sink", "default-persisted")
