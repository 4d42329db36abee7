"""Writing result files so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, then os.replace (atomic within one folder).

    mkstemp creates the file 0600; it is widened to what the umask allows for a normal file, so results
    on a shared volume stay readable by the other users a plain open() would allow.
    """
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        temp = Path(temp_name)
        temp.chmod(0o666 & ~_umask())
        temp.replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
