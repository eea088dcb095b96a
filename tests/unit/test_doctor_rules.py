from __future__ import annotations

from pivoicectl.core.doctor_rules import Facts, evaluate
from pivoicectl.core.echo_config import EchoConfig
from pivoicectl.core.realtime_rule import DaemonScheduling

CONF = EchoConfig("mic", "spk", "1.4.2", {}).render()


def healthy(**changes) -> Facts:
    f = Facts(
        pipewire_socket="/run/user/1000/pipewire-0",
        pipewire_reachable=True,
        server_name="PulseAudio (on PipeWire 1.4.2)",
        wireplumber_running=True,
        config_path="/home/pi/.config/pipewire/pipewire.conf.d/60-echo-cancel.conf",
        config_text=CONF,
        sources=["mic", "source_ec", "spk.monitor"],
        sinks=["spk"],
        ec_capture_from="mic",
        default_source="source_ec",
        default_sink="spk",
        persisted={"default.configured.audio.source": "source_ec"},
        portaudio_names=["pulse", "default"],
        api_key_present=True,
        audio_daemons=[
            DaemonScheduling("pipewire", 812, ("data-loop.0 SCHED_RR 20",)),
            DaemonScheduling("pipewire-pulse", 815, ("data-loop.0 SCHED_RR 20",)),
        ],
        rtkit_installed=True,
    )
    for k, v in changes.items():
        setattr(f, k, v)
    return f


def by_id(facts: Facts) -> dict[str, tuple[str, str, str]]:
    return {c.id: (c.status, c.detail, c.fix) for c in evaluate(facts)}


def test_healthy_stack_passes_everything_it_can():
    r = by_id(healthy())
    assert {k: v[0] for k, v in r.items()} == {
        "pipewire-running": "pass",
        "pulse-compat": "pass",
        "wireplumber": "pass",
        "echo-cancel-config": "pass",
        "echo-cancel-loaded": "pass",
        "default-source": "pass",
        "default-sink": "skip",
        "default-persisted": "pass",
        "portaudio-pulse": "pass",
        "headless-linger": "skip",
        "assistant-service": "skip",
        "pipewire-realtime": "pass",
        "echo-guard": "skip",
        "api-key": "pass",
    }


def test_every_failure_comes_with_a_fix():
    broken = healthy(
        pipewire_reachable=False,
        pulse_error="pipewire-pulse is not running",
        config_text=None,
        portaudio_error="PortAudio is not installed",
        api_key_present=False,
        systemd_user=True,
        linger=False,
        user="pi",
    )
    for check in evaluate(broken):
        if check.status in ("fail", "warn"):
            assert check.fix, check


def test_real_pulseaudio_is_not_pipewire():
    r = by_id(healthy(server_name="pulseaudio"))
    assert r["pulse-compat"][0] == "fail"
    assert r["echo-cancel-loaded"][0] == "skip"


def test_default_source_changed():
    r = by_id(healthy(default_source="mic"))
    assert r["default-source"][0] == "fail"
    assert "pactl set-default-source source_ec" in r["default-source"][2]


def test_persisted_default_points_elsewhere_fails_and_missing_warns():
    assert (
        by_id(healthy(persisted={"default.configured.audio.source": "mic"}))["default-persisted"][0]
        == "fail"
    )
    assert by_id(healthy(persisted={}))["default-persisted"][0] == "warn"


def test_config_present_module_missing_says_restart():
    r = by_id(healthy(sources=["mic", "spk.monitor"], ec_capture_from=None))
    assert r["echo-cancel-loaded"][0] == "fail"
    assert "systemctl --user restart" in r["echo-cancel-loaded"][2]
    assert r["default-source"][0] == "skip"


def test_pinned_mic_unplugged():
    r = by_id(
        healthy(sources=["source_ec", "spk.monitor", "webcam_mic"], ec_capture_from="webcam_mic")
    )
    assert r["echo-cancel-config"][0] == "fail"
    assert "mic" in r["echo-cancel-config"][1]
    assert r["echo-cancel-loaded"][0] == "fail"
    assert "webcam_mic" in r["echo-cancel-loaded"][1]


def test_foreign_config_is_a_warning():
    r = by_id(
        healthy(config_text="context.modules = [ { name = libpipewire-module-echo-cancel } ]")
    )
    assert r["echo-cancel-config"][0] == "warn"


def test_03_config_needs_sink_ec_as_default_sink():
    conf03 = EchoConfig("mic", "spk", "0.3.65", {}).render()
    r = by_id(healthy(config_text=conf03, sinks=["spk", "sink_ec"], default_sink="spk"))
    assert r["default-sink"][0] == "fail"
    assert "pactl set-default-sink sink_ec" in r["default-sink"][2]


def test_linger_off_is_a_warning_with_the_command():
    r = by_id(healthy(systemd_user=True, linger=False, user="pi"))
    assert r["headless-linger"] == (
        "warn",
        r["headless-linger"][1],
        "sudo loginctl enable-linger pi",
    )


def test_portaudio_without_pulse_device_fails():
    r = by_id(healthy(portaudio_names=["hw:0,0", "sysdefault"]))
    assert r["portaudio-pulse"][0] == "fail"
    assert "libasound2-plugins" in r["portaudio-pulse"][2]


def test_echo_guard_advice_follows_the_last_measurement():
    def guard(m):
        return by_id(healthy(last_measure=m))["echo-guard"]

    assert guard(None)[0] == "skip"
    good = {"erle_db": 42.0, "erl_db": 12.0, "time": "t", "nodes": {"output": "source_ec"}}
    assert guard(good)[0] == "pass"
    weak = {**good, "erle_db": 18.0}
    assert guard(weak)[0] == "warn" and "--echo-guard vad-gate" in guard(weak)[2]
    bad = {**good, "erle_db": 4.0}
    assert "--echo-guard gate" in guard(bad)[2]
    raw = {**good, "nodes": {"output": "sim_mic"}}
    assert guard(raw)[0] == "warn" and "pivoicectl setup" in guard(raw)[2]


def test_the_boot_service_check_follows_systemds_state_with_a_fix():
    def service(**kw):
        base = dict(
            systemd_user=True,
            linger=True,
            service_installed=True,
            service_enabled="enabled",
            service_active="active",
            service_status="listening",
        )
        return by_id(healthy(**{**base, **kw}))["assistant-service"]

    assert service(service_installed=False)[0] == "skip"
    assert service() == ("pass", "active: listening", "")
    status, detail, fix = service(service_enabled="disabled")
    assert status == "fail" and "not start at boot" in detail
    assert fix == "systemctl --user enable --now pivoicectl.service"
    status, detail, fix = service(service_active="failed", service_result="exit-code")
    assert status == "fail" and "exit-code" in detail and "restart" in fix
    assert service(service_active="inactive")[0] == "fail"
    linger = by_id(healthy(systemd_user=True, linger=False, service_installed=True))
    assert "does not start at boot" in linger["headless-linger"][1]


def test_a_key_file_others_can_read_is_a_warning_that_never_shows_the_key():
    status, detail, fix = by_id(
        healthy(exposed_key_files=["/home/pi/.config/pivoicectl/config.toml"])
    )["api-key"]
    assert status == "warn" and "other users can read it" in detail
    assert fix == "chmod 600 /home/pi/.config/pivoicectl/config.toml"


NOT_REALTIME = [DaemonScheduling("pipewire", 812), DaemonScheduling("pipewire-pulse", 815)]
"""What a Pi with neither rtkit nor rtprio limits runs: no realtime thread, limit 0."""
RESTART = "systemctl --user restart pipewire pipewire-pulse wireplumber"


def test_realtime_passes_naming_the_threads_that_got_it():
    status, detail, _ = by_id(healthy())["pipewire-realtime"]
    assert status == "pass"
    assert "pipewire (pid 812): data-loop.0 SCHED_RR 20" in detail


def test_realtime_without_rtkit_says_to_install_it_and_restart():
    f = healthy(audio_daemons=NOT_REALTIME, rtkit_installed=False, user="pi")
    status, detail, fix = by_id(f)["pipewire-realtime"]
    assert status == "warn"
    assert "no realtime thread" in detail and "rtkit" in detail
    assert fix == f"sudo apt-get install rtkit && {RESTART}"


def test_realtime_without_rtkit_also_offers_the_pipewire_group_where_debian_ships_its_limits():
    f = healthy(
        audio_daemons=NOT_REALTIME, rtkit_installed=False, user="pi", pipewire_group_limits=True
    )
    fix = by_id(f)["pipewire-realtime"][2]
    assert fix.startswith(f"sudo apt-get install rtkit && {RESTART}")
    assert "sudo adduser pi pipewire, then sudo reboot" in fix
    assert "/etc/security/limits.d/25-pw-rlimits.conf" in fix


def test_realtime_with_rtkit_that_did_not_grant_it_points_at_the_group_or_rtkit():
    f = healthy(audio_daemons=NOT_REALTIME, user="pi", pipewire_group_limits=True)
    status, detail, fix = by_id(f)["pipewire-realtime"]
    assert status == "warn" and "rtkit is installed" in detail
    assert fix.startswith("sudo adduser pi pipewire")
    f = healthy(audio_daemons=NOT_REALTIME, user="pi")
    assert by_id(f)["pipewire-realtime"][2] == f"sudo systemctl restart rtkit-daemon && {RESTART}"


def test_realtime_in_the_group_already_needs_the_user_manager_restarted():
    f = healthy(
        audio_daemons=NOT_REALTIME,
        user="pi",
        pipewire_group_limits=True,
        user_groups=["audio", "pipewire"],
    )
    fix = by_id(f)["pipewire-realtime"][2]
    assert "pi is in the pipewire group" in fix and fix.endswith("sudo reboot")


def test_realtime_allowed_by_limits_but_not_taken_means_module_rt_is_off():
    f = healthy(audio_daemons=[DaemonScheduling("pipewire", 812, (), rtprio_limit=95)])
    status, detail, fix = by_id(f)["pipewire-realtime"]
    assert status == "warn" and "RLIMIT_RTPRIO 95" in detail
    assert "module.rt = false" in fix and fix.endswith(RESTART)


def test_realtime_of_pipewire_pulse_alone_is_not_enough():
    daemons = [
        DaemonScheduling("pipewire", 812),
        DaemonScheduling("pipewire-pulse", 815, ("data-loop.0 SCHED_FIFO 83",)),
    ]
    assert by_id(healthy(audio_daemons=daemons))["pipewire-realtime"][0] == "warn"


def test_realtime_is_skipped_when_pipewire_is_down_or_out_of_sight():
    assert by_id(healthy(pipewire_reachable=False))["pipewire-realtime"][0] == "skip"
    status, detail, _ = by_id(healthy(audio_daemons=[]))["pipewire-realtime"]
    assert status == "skip" and "cannot see the pipewire process" in detail
