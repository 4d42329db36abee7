"""No usage telemetry: onnxruntime 1.32 writes and uploads some unless told not to, and the runtime tells it.

A bare `import onnxruntime` (the pinned release) writes a session file into the temporary folder and a device
id and an event database under ~/.cache/Microsoft; importing it through this project writes nothing, in a
fresh process with an empty home and temporary folder and no ORT_DISABLE_TELEMETRY of its own. onnxruntime
also stays quiet where a CI system's variables are set (`CI`, `GITHUB_ACTIONS`, ...), which a server's
environment is not: the children here run without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def written_by(code: str, folder: Path) -> list[str]:
    folder.mkdir()
    dropped = {"ORT_DISABLE_TELEMETRY", "CI", "GITHUB_ACTIONS", "TF_BUILD"}
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(HOME=str(folder), TMPDIR=str(folder))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_the_runtime_turns_onnxruntimes_telemetry_off(tmp_path: Path) -> None:
    code = "import vreyesam.runtime.engines.onnxruntime_graph as g; g.session_options(g.SessionConfig())"
    assert written_by(code, tmp_path / "through-the-runtime") == []
    # What the runtime prevents (if a later onnxruntime drops its telemetry, this line says so).
    assert ".ses" in written_by("import onnxruntime", tmp_path / "bare")
