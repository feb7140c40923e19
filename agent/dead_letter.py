"""The dead-letter file: lines the store refused, with its reason, kept for an operator.

``dead_letter_dir/dead-letter.jsonl`` holds one JSON object per line with
``time`` (UTC, ISO 8601), ``reason`` and ``line``; replaying is
``jq -r .line dead-letter.jsonl`` into the store once the cause is fixed. The
file grows to ``max_bytes`` at most: a write that would pass it raises
:class:`DeadLetterFull`, and the sender keeps the lines in the WAL instead.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

from wattwise.clock import Clock
from wattwise.errors import ConfigError, TransientDeliveryError, WalError

DEAD_LETTER_FILE = "dead-letter.jsonl"


class DeadLetterFull(TransientDeliveryError):
    """The dead-letter file is at its size bound; the refused lines wait in the WAL."""


class DeadLetterFile:
    """Appends refused lines, whole or not at all, within a size bound."""

    def __init__(self, directory: Path, *, clock: Clock, max_bytes: int) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                "wal.dead_letter_dir", str(directory), f"a directory ({e.strerror})"
            ) from e
        self.path = directory / DEAD_LETTER_FILE
        self._clock = clock
        self._max_bytes = max_bytes

    def write(self, refused: Sequence[tuple[bytes, str]], *, retry_after_s: float) -> None:
        """Append every ``(line, reason)``, synced; raise DeadLetterFull or WalError."""
        when = dt.datetime.fromtimestamp(self._clock.time_ns() / 1e9, tz=dt.UTC).isoformat()
        text = "".join(
            json.dumps(
                {"time": when, "reason": reason, "line": line.decode("utf-8", "backslashreplace")}
            )
            + "\n"
            for line, reason in refused
        ).encode()
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        except OSError as e:
            raise WalError(f"cannot read the dead-letter file {self.path}: {e}") from e
        if size + len(text) > self._max_bytes:
            raise DeadLetterFull(
                f"the dead-letter file {self.path} is full ({size} bytes of "
                f"{self._max_bytes}): {len(refused)} refused lines wait in the write-ahead log "
                "until it is moved away",
                retry_after_s=retry_after_s,
            )
        try:
            with open(self.path, "ab") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise WalError(f"cannot write the dead-letter file {self.path}: {e}") from e
