"""The room's noise floor, followed block by block: the one tracker every live path uses.

Why one: the energy VAD (`parrot`, the local barge-in, the stand-in server's turn
detection) and the uplink pacer of `run` all ask "is this block louder than the room",
and the room is whatever the quietest recent blocks say. A fixed threshold breaks as soon
as the room or the mic gain changes; a floor that adapts does not.

The rule, per block: the floor drops at once to any quieter block and rises by at most
`rise_db_per_s` times the time since the last block; it never goes below `min_dbfs`.
Dropping at once means a louder room is learnt slowly and a quieter one instantly, so
speech (loud, and never for long without a pause) cannot become the floor, while the
room getting louder (a fan switched on) is followed within seconds. The minimum is the
lowest floor worth tracking: below it each caller's absolute level threshold decides
anyway, and without it a stretch of digital silence (a converged echo canceller outputs
exact zeros) would drag the floor to -120 dBFS and leave it crawling back up for a
minute while the room is louder again.

With blocks of equal length r dB of rise apart, floor[n] = min(level[n], floor[n-1] + r)
unrolls to n*r plus a cumulative minimum of (level[k] - k*r): an offline analysis of a
whole recording can use that closed form and agree with the live path block for block.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivoicectl.dsp.levels import FLOOR_DBFS


@dataclass(frozen=True)
class NoiseFloorSettings:
    """How the floor adapts; units in the names."""

    rise_db_per_s: float
    """How fast the floor may follow the room getting louder."""
    min_dbfs: float = FLOOR_DBFS
    """The floor never goes below this."""

    def __post_init__(self) -> None:
        if self.rise_db_per_s < 0:
            raise ValueError(f"rise_db_per_s={self.rise_db_per_s} must not be negative")


class NoiseFloor:
    """`update(level_dbfs, elapsed_s)` per block -> the floor in dBFS.

    Starts at `start_dbfs` if given (a calibration, or a conservative guess), otherwise
    at the first block's level. A caller that knows a block is not room tone (the
    stand-in server during a turn) simply does not feed it: the floor holds.
    """

    __slots__ = ("_floor_dbfs", "_min_dbfs", "_rise_db_per_s", "settings")

    def __init__(self, settings: NoiseFloorSettings, start_dbfs: float | None = None) -> None:
        self._floor_dbfs: float | None = None
        self.retune(settings)
        self.reset(start_dbfs)

    def retune(self, settings: NoiseFloorSettings) -> None:
        """New rate and minimum from the next block on; the floor itself stays."""
        self.settings = settings
        self._rise_db_per_s = settings.rise_db_per_s
        self._min_dbfs = settings.min_dbfs

    def reset(self, start_dbfs: float | None = None) -> None:
        """Forget the floor; start from `start_dbfs` (clamped at the minimum) or the next block."""
        self._floor_dbfs = None if start_dbfs is None else max(start_dbfs, self._min_dbfs)

    @property
    def floor_dbfs(self) -> float | None:
        """The current floor, None before the first block (without a start)."""
        return self._floor_dbfs

    def update(self, level_dbfs: float, elapsed_s: float) -> float:
        """Take one block's level, `elapsed_s` after the previous one; the new floor.

        Plain float comparisons instead of min()/max(): this runs for every 20 ms block.
        """
        level = level_dbfs if level_dbfs > self._min_dbfs else self._min_dbfs
        floor = self._floor_dbfs
        if floor is None:
            floor = level
        elif elapsed_s > 0.0:
            risen = floor + self._rise_db_per_s * elapsed_s
            floor = level if level < risen else risen
        elif level < floor:
            floor = level
        self._floor_dbfs = floor
        return floor
