"""What WirePlumber will restore at the next start: its persisted default nodes.

Setting a default through the Pulse protocol writes the metadata key
`default.configured.audio.source`; WirePlumber 0.4 and 0.5 both save it in
`$XDG_STATE_HOME/wireplumber/default-nodes` (an ini-like file) and restore it when a
node of that name appears. Reading that file is how we prove a reboot keeps the choice.
"""

from __future__ import annotations

from pivoicectl import paths
from pivoicectl.polling import wait_until

SOURCE_KEY = "default.configured.audio.source"
SINK_KEY = "default.configured.audio.sink"


def parse_default_nodes(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("[", "#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def persisted_defaults() -> dict[str, str]:
    try:
        return parse_default_nodes(paths.wireplumber_default_nodes().read_text())
    except OSError:
        return {}


def wait_persisted(key: str, value: str, timeout_s: float = 5.0) -> bool:
    """WirePlumber saves its state shortly after the change; poll for it."""
    return wait_until(lambda: persisted_defaults().get(key) == value, timeout_s, 0.1)


def how_it_persists(wireplumber_version: str | None) -> str:
    series = (wireplumber_version or "?").rsplit(".", 1)[0]
    return (
        f"WirePlumber {series} saved {SOURCE_KEY} in {paths.wireplumber_default_nodes()} "
        "and restores it when source_ec appears at login; source_ec also has "
        "priority.session=3000, so it wins even if that file is lost"
    )
