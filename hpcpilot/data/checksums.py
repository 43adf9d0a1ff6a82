"""Streaming file checksums (adler32, md5) in the forms PanDA uses.

A file is read with ``readinto`` into a few reused buffers and handed to the hash as `memoryview` slices:
constant memory (`BUFFERS` x `BUFFER_SIZE`), no allocation per block. For a file larger than two
buffers a reader thread fills the next buffer while the hash consumes the current one (``readinto`` and
`zlib.adler32`/`hashlib` release the GIL), so a checksum of a file in the page cache runs at the speed of
the hash itself rather than hash plus copy (``bench/checksum.py`` measures it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import threading
import zlib
from collections.abc import Callable

from hpcpilot.model.job import Checksum, ChecksumAlgorithm

#: Bytes read per call: large enough that the per-call overhead vanishes, small enough for the caches.
BUFFER_SIZE = 2 << 20
#: Buffers in flight between the reader thread and the hash.
BUFFERS = 3

StrPath = str | os.PathLike[str]
Update = Callable[[memoryview], object]


def _stream(path: StrPath, update: Update) -> None:
    """Feed the file at ``path`` to ``update`` block by block, in order, through reused buffers."""
    with open(path, "rb", buffering=0) as handle:
        with contextlib.suppress(AttributeError, OSError):  # not on every OS; only a hint
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        if os.fstat(handle.fileno()).st_size <= 2 * BUFFER_SIZE:
            view = memoryview(bytearray(BUFFER_SIZE))
            while n := handle.readinto(view):
                update(view[:n])
        else:
            _stream_pipelined(handle, update)


def _stream_pipelined(handle: io.FileIO, update: Update) -> None:
    """`_stream` with a reader thread one buffer ahead of the hash."""
    free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
    for _ in range(BUFFERS):
        free.put(bytearray(BUFFER_SIZE))

    def read() -> None:
        try:
            while (buffer := free.get()) is not None:
                n = handle.readinto(buffer)
                full.put((buffer, n or 0))
                if not n:
                    return
        except BaseException as exc:  # handed to the hashing thread, which raises it
            full.put(exc)

    reader = threading.Thread(target=read, name="hpcpilot-checksum-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = full.get()
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            if not n:
                return
            update(memoryview(buffer)[:n])
            free.put(buffer)
    finally:
        free.put(None)  # stops the reader if it is still going
        reader.join()


def adler32_of_file(path: StrPath) -> str:
    """Return the adler32 of a file as 8 lower-case hex digits, streaming."""
    value = 1

    def update(block: memoryview) -> None:
        nonlocal value
        value = zlib.adler32(block, value)

    _stream(path, update)
    return f"{value & 0xFFFFFFFF:08x}"


def md5_of_file(path: StrPath) -> str:
    """Return the md5 of a file as 32 lower-case hex digits, streaming."""
    digest = hashlib.md5(usedforsecurity=False)
    _stream(path, digest.update)
    return digest.hexdigest()


def checksum_of_file(path: StrPath, algorithm: ChecksumAlgorithm) -> Checksum:
    """Return the `Checksum` of a file by ``algorithm`` (adler32 or md5), streaming.

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    if algorithm is ChecksumAlgorithm.ADLER32:
        return Checksum(algorithm, adler32_of_file(path))
    return Checksum(algorithm, md5_of_file(path))
