"""Tools the model can call during `pivoicectl run` (Realtime function tools).

`load_toolbox` builds a `Toolbox` from the `[run]` table of config.toml: the built-ins
(`set_volume`, `get_local_time`) that `builtin_tools` enables, and command tools from
`[[run.tools]]` tables. The client sends `Toolbox.declarations()` as session.tools and
runs each function_call through `Toolbox.call`, which never raises for a tool's failure:
the model reads `{"error": "..."}` instead. The modules: `box` (the tool box and argument
parsing), `config` (the tables, checked), `command` (a program per call), `builtin`,
`schema` (JSON Schema checks) and `outcome` (what a call gives back).
"""

from pivoicectl.realtime.tools.box import Tool, Toolbox
from pivoicectl.realtime.tools.config import BUILTINS, load_toolbox
from pivoicectl.realtime.tools.outcome import ToolOutcome, ToolResult

__all__ = ["BUILTINS", "Tool", "ToolOutcome", "ToolResult", "Toolbox", "load_toolbox"]
