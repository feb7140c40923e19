"""The sender: drains the write-ahead log into a transport, batch by batch.

A batch leaves the log (``ack``) only when every line in it was stored or
dead-lettered. What happens on each delivery error:

- :class:`TransientDeliveryError`: wait (exponential backoff with full
  jitter, at least the server's ``Retry-After``), then resend the same batch.
- :class:`AuthError`: keep the data, log an ERROR (at most once per
  ``auth_log_interval_s``), back off and retry until the credentials work.
- :class:`BatchTooLarge`: split the batch in halves and send each; a single
  line too large for the server goes to the dead-letter file.
- :class:`RejectedBatch`: bisect to find the lines InfluxDB refuses and write
  only those, each with InfluxDB's reason, to the dead-letter file. Resending
  the good lines of a 1.x partial write is harmless: same series and
  timestamp overwrite the same point.

Dead-letter file: ``dead_letter_dir/dead-letter.jsonl``, one JSON object per
line with ``time`` (UTC, ISO 8601), ``reason`` and ``line``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path

from wattwise.agent.wal import Wal, WalBatch
from wattwise.clock import Clock
from wattwise.common.transport import Transport
from wattwise.errors import (
    AuthError,
    BatchTooLarge,
    DeliveryError,
    RejectedBatch,
    TransientDeliveryError,
    WalError,
)

log = logging.getLogger(__name__)

DEAD_LETTER_FILE = "dead-letter.jsonl"


@dataclass(frozen=True, slots=True)
class SenderStats:
    sent_lines_total: int
    retried_batches_total: int
    dead_lettered_lines_total: int
    last_error: str | None
    auth_failing: bool


class Sender:
    """Moves lines from a :class:`Wal` to a :class:`Transport`, never losing one silently."""

    def __init__(
        self,
        wal: Wal,
        transport: Transport,
        *,
        clock: Clock,
        dead_letter_dir: Path,
        rng: random.Random,
        batch_max_lines: int = 5000,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 60.0,
        idle_poll_s: float = 0.25,
        auth_log_interval_s: float = 60.0,
    ) -> None:
        self._wal = wal
        self._transport = transport
        self._clock = clock
        self._dead_letter_path = dead_letter_dir / DEAD_LETTER_FILE
        dead_letter_dir.mkdir(parents=True, exist_ok=True)
        self._rng = rng
        self._batch_max_lines = batch_max_lines
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._idle_poll_s = idle_poll_s
        self._auth_log_interval_s = auth_log_interval_s
        self._lock = threading.Lock()
        self._failures = 0
        self._last_auth_log: float | None = None
        self._sent = 0
        self._retried = 0
        self._dead_lettered = 0
        self._last_error: str | None = None
        self._auth_failing = False
        # A batch that failed is resent as it was (not re-read, which could
        # regroup it): parts already stored or dead-lettered are skipped, and
        # parts already split are not sent whole again, so a line is
        # dead-lettered once however often delivery is interrupted.
        self._inflight: WalBatch | None = None
        self._done_ranges: set[tuple[int, int]] = set()
        self._split_ranges: set[tuple[int, int]] = set()

    # -- driving -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Send until ``stop`` is set; waits through the clock so tests need not sleep."""
        while not stop.is_set():
            delay_s, _ = self._step()
            if delay_s > 0:
                self._clock.sleep_until(self._clock.monotonic() + delay_s, stop)

    def send_once(self) -> bool:
        """Try one batch; True if a batch left the log (stored or dead-lettered)."""
        _, acked = self._step()
        return acked

    def flush(self, timeout_s: float) -> bool:
        """Send until the log is empty or ``timeout_s`` passed; True if it is empty."""
        deadline = self._clock.monotonic() + timeout_s
        stop = threading.Event()
        while self._wal.stats().queue_lines > 0:
            delay_s, _ = self._step()
            now = self._clock.monotonic()
            if now >= deadline or (delay_s > 0 and now + delay_s > deadline):
                return self._wal.stats().queue_lines == 0
            if delay_s > 0:
                self._clock.sleep_until(now + delay_s, stop)
        return True

    def stats(self) -> SenderStats:
        with self._lock:
            return SenderStats(
                sent_lines_total=self._sent,
                retried_batches_total=self._retried,
                dead_lettered_lines_total=self._dead_lettered,
                last_error=self._last_error,
                auth_failing=self._auth_failing,
            )

    # -- one attempt ---------------------------------------------------------

    def _step(self) -> tuple[float, bool]:
        """Send one batch; return the seconds to wait before the next attempt, and if it left."""
        try:
            if self._inflight is None:
                self._inflight = self._wal.read_batch(self._batch_max_lines)
                self._done_ranges.clear()
                self._split_ranges.clear()
            batch = self._inflight
            if batch is None:
                return self._idle_poll_s, False
            self._deliver(batch.lines, 0, len(batch.lines))
            self._wal.ack(batch)
        except (TransientDeliveryError, AuthError, WalError) as e:
            return self._failed(e), False
        self._inflight = None
        self._recovered()
        return 0.0, True

    def _deliver(self, lines: list[bytes], lo: int, hi: int) -> None:
        """Store ``lines[lo:hi]``, splitting around refused or oversized parts."""
        if (lo, hi) in self._done_ranges:
            return
        if (lo, hi) in self._split_ranges:
            self._deliver_halves(lines, lo, hi)
        else:
            try:
                self._transport.write(lines[lo:hi])
                with self._lock:
                    self._sent += hi - lo
            except BatchTooLarge as e:
                self._split_or_dead_letter(lines, lo, hi, f"too large for the store: {e}")
            except RejectedBatch as e:
                self._split_or_dead_letter(lines, lo, hi, str(e))
        self._done_ranges.add((lo, hi))

    def _split_or_dead_letter(self, lines: list[bytes], lo: int, hi: int, reason: str) -> None:
        if hi - lo == 1:
            self._dead_letter(lines[lo], reason)
            return
        self._split_ranges.add((lo, hi))
        self._deliver_halves(lines, lo, hi)

    def _deliver_halves(self, lines: list[bytes], lo: int, hi: int) -> None:
        mid = (lo + hi) // 2
        self._deliver(lines, lo, mid)
        self._deliver(lines, mid, hi)

    def _dead_letter(self, line: bytes, reason: str) -> None:
        when = dt.datetime.fromtimestamp(self._clock.time_ns() / 1e9, tz=dt.UTC)
        record = {
            "time": when.isoformat(),
            "reason": reason,
            "line": line.decode("utf-8", "backslashreplace"),
        }
        try:
            with open(self._dead_letter_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise WalError(f"cannot write the dead-letter file {self._dead_letter_path}") from e
        with self._lock:
            self._dead_lettered += 1
        log.warning("dead-lettered a line the store refused: %s", reason)

    # -- failures ------------------------------------------------------------

    def _failed(self, error: DeliveryError | WalError) -> float:
        self._failures += 1
        with self._lock:
            self._retried += 1
            self._last_error = f"{type(error).__name__}: {error}"
            self._auth_failing = isinstance(error, AuthError)
        if isinstance(error, AuthError):
            self._log_auth_failure(error)
        else:
            log.warning("delivery failed (attempt %d), will retry: %s", self._failures, error)
        ceiling_s = min(self._backoff_max_s, self._backoff_initial_s * 2 ** (self._failures - 1))
        delay_s = self._rng.uniform(0.0, ceiling_s)
        retry_after_s = getattr(error, "retry_after_s", None)
        if retry_after_s is not None:
            delay_s = max(delay_s, retry_after_s)
        return delay_s

    def _log_auth_failure(self, error: AuthError) -> None:
        now = self._clock.monotonic()
        last = self._last_auth_log
        if last is None or now - last >= self._auth_log_interval_s:
            self._last_auth_log = now
            queued = self._wal.stats().queue_lines
            log.error(
                "the store refuses our credentials; %d lines kept in the write-ahead log "
                "until they are fixed: %s",
                queued,
                error,
            )

    def _recovered(self) -> None:
        if self._failures:
            log.info("delivery recovered after %d failed attempts", self._failures)
        self._failures = 0
        self._last_auth_log = None
        with self._lock:
            self._auth_failing = False
