"""Files written whole or not at all: each output goes to a temporary name beside its destination and is renamed
over it only once complete (a rename within a directory is atomic on POSIX filesystems, NFS included). A crash or
kill mid-write leaves the previous file, or none, never half of one; a sweep's results are read while it runs and
after it dies."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def replacing(path: Path, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """An open file whose contents replace `path` when the block ends without an exception."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with replacing(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path, "wb") as handle:
        handle.write(data)
