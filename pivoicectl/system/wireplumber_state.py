"""What WirePlumber will restore at the next start: its persisted default nodes.

Setting a default through the Pulse protocol writes the metadata key
`default.configured.audio.source`; WirePlumber 0.4 and 0.5 both save it in
`$XDG_STATE_HOME/wireplumber/default-nodes` (an ini-like file) and restore it when a
node of that name appears. Reading that file is how we prove a reboot keeps the choice.

Both also keep the names configured before, newest first, as
`default.configured.audio.source.0`, `.1`, ..., and fall back to them when the
configured node is missing. WirePlumber 0.5 forgets that list when the configured key
is deleted, so `setup --undo` can rebuild it exactly; 0.4 keeps it whatever happens
(and lists the configured name again as `.0`), so there undo can only put back the
configured name, and source_ec stays in the list of earlier choices.
"""

from __future__ import annotations

from pivoicectl.system import paths
from pivoicectl.system.polling import wait_until

SOURCE_KEY = "default.configured.audio.source"
SINK_KEY = "default.configured.audio.sink"
CONFIGURED_KEYS = (SOURCE_KEY, SINK_KEY)


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


def saved_stack(saved: dict[str, str], key: str) -> list[str]:
    """The names saved under `key`, newest first: `key`, then `key.0`, `key.1`, ..."""
    out: list[str] = []
    name = key
    while name in saved:
        out.append(saved[name])
        name = f"{key}.{len(out) - 1}"
    return out


def configured(saved: dict[str, str]) -> dict[str, list[str]]:
    """The saved stacks of the configured default source and sink."""
    return {key: saved_stack(saved, key) for key in CONFIGURED_KEYS}


def rebuilds_lists(wireplumber_version: str | None) -> bool:
    """True where deleting the configured key clears the list of earlier choices."""
    return not (wireplumber_version or "").startswith("0.4")


def restorable(stacks: dict[str, list[str]], whole_lists: bool) -> dict[str, list[str]]:
    """What of the saved stacks undo can put back: all, or the configured names only."""
    return stacks if whole_lists else {key: names[:1] for key, names in stacks.items()}


def wait_configured(want: dict[str, list[str]], whole_lists: bool, timeout_s: float = 5.0) -> bool:
    """Wait until WirePlumber has saved the stacks in `want` (see `restorable`)."""

    def saved() -> bool:
        return restorable(configured(persisted_defaults()), whole_lists) == want

    return wait_until(saved, timeout_s, 0.1)


def wait_persisted(key: str, value: str, timeout_s: float = 5.0) -> bool:
    """WirePlumber saves its state shortly after the change; poll for it."""
    return wait_until(lambda: persisted_defaults().get(key) == value, timeout_s, 0.1)


def how_it_persists(wireplumber_version: str | None) -> str:
    series = (wireplumber_version or "?").rsplit(".", 1)[0]
    return (
        f"WirePlumber {series} saved {SOURCE_KEY} in {paths.wireplumber_default_nodes()} "
        "and restores it whenever it starts (at boot under linger); source_ec also has "
        "priority.session=3000, so it wins even if that file is lost"
    )
