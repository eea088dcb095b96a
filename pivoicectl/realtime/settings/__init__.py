"""Settings of `pivoicectl run`, merged from flags, environment and the config file.

Precedence is flags > `PIVOICECTL_*` environment > `[run]` in
`$XDG_CONFIG_HOME/pivoicectl/config.toml` > defaults, decided by one pure function
(`merge_run_settings`) so the rule is tested without touching the environment. The API
key follows the same order with `OPENAI_API_KEY` as its variable and `api_key` in the
file; it is held in `RunSettings` but never printed (not in the repr, masked by
`public_view`).

The modules: `groups` (the `RunSettings` dataclasses: defaults and checks), `table`
(the one row per setting that makes its flag, variable and key), `loader` (the merge,
and errors that name where a bad value came from).

Example config file:

    [run]
    voice = "marin"
    vad = "semantic"
    transcribe = true
    api_key = "sk-..."          # or OPENAI_API_KEY
    barge_in = "local"          # server | local | off
    barge_in_threshold = 2      # speech frames (of barge_in_frame_ms) in the window
    barge_in_window_size = 5
    barge_in_lockout_seconds = 0.5
    barge_in_grace_period_seconds = 1.0
    barge_in_vad = "energy"     # energy | silero (pip install 'pivoicectl[silero]')
    echo_guard = "vad-gate"     # off | gate | vad-gate (no working echo canceller)
    echo_tail_ms = 300
    echo_erl_db = 12.0          # echo return loss from `pivoicectl measure` (optional)
    ptt = "gpio"                # push-to-talk: gpio | key (turn detection off)
    gpio_pin = 18               # BCM number of the button (to ground; pull-up inside)
    token_url = "https://backend.example/v1/realtime/session"  # no api_key on the device
    trace_url = "https://backend.example/v1/voice/trace"      # POST /start, /event, /end
    audio_backend = "auto"      # auto | pulse | portaudio (auto: pulse when reachable)
    input_block_ms = 20         # mic block size (larger: less CPU, more latency)
    output_block_ms = 20        # speaker block size (portaudio backend)
    keep_output_open = false    # portaudio: never stop the output stream between answers
    onset_mute_ms = 300         # mic sent as silence as an answer starts (0: off)
"""

from pivoicectl.realtime.settings.groups import (
    AudioSettings,
    LimitSettings,
    PttSettings,
    RunSettings,
    ServiceSettings,
    TraceSettings,
)
from pivoicectl.realtime.settings.loader import (
    env_values,
    load_run_settings,
    merge_run_settings,
    read_config_file,
)
from pivoicectl.realtime.settings.table import SETTINGS, Setting, public_view

__all__ = [
    "SETTINGS",
    "AudioSettings",
    "LimitSettings",
    "PttSettings",
    "RunSettings",
    "ServiceSettings",
    "Setting",
    "TraceSettings",
    "env_values",
    "load_run_settings",
    "merge_run_settings",
    "public_view",
    "read_config_file",
]
