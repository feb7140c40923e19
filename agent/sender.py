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

A store that refuses *every* line is not judging the data: a broken proxy in
front of it answering 400 or 413 to everything would send all data to the
dead-letter file. After ``hold_after_rejected_batches`` batches in a row of
which every line was refused, the sender stops dead-lettering and holds the
data in the WAL, logging an ERROR once a minute and reporting
``rejecting_all``; it probes the store with the held batch and with single lines
of it, and goes back to normal as soon as one is accepted.

The dead-letter file (:mod:`wattwise.agent.dead_letter`) grows to
``dead_letter_max_bytes`` at most; when it is full, refused lines are held in
the WAL (and an ERROR says so) until the operator moves the file away.

Nothing stops the sender's loop: an exception no rule above expects is logged,
counted in ``sender_errors_total`` and retried after a backoff. No wait is
longer than ``backoff_max_s``, whatever ``Retry-After`` says.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from wattwise.agent.dead_letter import DeadLetterFile, DeadLetterFull
from wattwise.agent.throttle import LogThrottle
from wattwise.agent.wal import Wal, WalBatch
from wattwise.clock import Clock
from wattwise.common import http
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


@dataclass(frozen=True, slots=True)
class SenderStats:
    sent_lines_total: int
    retried_batches_total: int
    dead_lettered_lines_total: int
    last_error: str | None
    auth_failing: bool
    sender_errors_total: int = 0
    """Unexpected exceptions the loop caught and outlived."""
    rejecting_all: bool = False
    """The store refuses every line: data is held in the WAL, not dead-lettered."""


class _Held(TransientDeliveryError):
    """The batch stays in the WAL: the store refuses everything, or the dead-letter file is
    full. Retried after the longest backoff."""


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
        hold_after_rejected_batches: int = 3,
        dead_letter_max_bytes: int = 64 << 20,
    ) -> None:
        self._wal = wal
        self._transport = transport
        self._clock = clock
        self._dead_letters = DeadLetterFile(
            dead_letter_dir, clock=clock, max_bytes=dead_letter_max_bytes
        )
        self._hold_after = hold_after_rejected_batches
        self._throttle = LogThrottle(clock, auth_log_interval_s)
        self._rng = rng
        self._batch_max_lines = batch_max_lines
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._idle_poll_s = idle_poll_s
        self._lock = threading.Lock()
        self._failures = 0
        self._sent = 0
        self._retried = 0
        self._dead_lettered = 0
        self._last_error: str | None = None
        self._auth_failing = False
        self._errors = 0
        self._whole_rejections = 0
        self._holding = False
        self._probe_index = 0
        # A batch that failed is resent as it was (not re-read, which could
        # regroup it): parts already stored or dead-lettered are skipped, and
        # parts already split are not sent whole again, so a line is
        # dead-lettered once however often delivery is interrupted.
        self._inflight: WalBatch | None = None
        self._done_ranges: set[tuple[int, int]] = set()
        self._split_ranges: set[tuple[int, int]] = set()
        # Refused lines are dead-lettered when their batch is done, once it is known
        # whether the store refused some lines or all of them.
        self._refused: dict[int, str] = {}

    # -- driving -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Send until ``stop`` is set; waits through the clock so tests need not sleep.

        Nothing ends this loop but ``stop``: an unexpected exception is logged, counted
        and retried after a backoff, so the sender cannot die while sampling goes on."""
        while not stop.is_set():
            delay_s, _ = self._attempt()
            if delay_s > 0:
                self._clock.sleep_until(self._clock.monotonic() + delay_s, stop)

    def send_once(self) -> bool:
        """Try one batch; True if a batch left the log (stored or dead-lettered)."""
        _, acked = self._attempt()
        return acked

    def flush(self, timeout_s: float) -> bool:
        """Send until the log is empty or ``timeout_s`` passed; True if it is empty.

        A request under way when the time is up ends then too (a stopping agent must
        exit within its unit's stop timeout, however slowly the store answers)."""
        deadline = self._clock.monotonic() + timeout_s
        stop = threading.Event()
        with http.deadline(time.monotonic() + timeout_s):
            while self._wal.stats().queue_lines > 0:
                delay_s, _ = self._attempt()
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
                sender_errors_total=self._errors,
                rejecting_all=self._holding,
            )

    # -- one attempt ---------------------------------------------------------

    def _attempt(self) -> tuple[float, bool]:
        try:
            return self._step()
        except Exception as e:
            return self._crashed(e), False

    def _step(self) -> tuple[float, bool]:
        """Send one batch; return the seconds to wait before the next attempt, and if it left."""
        try:
            if self._inflight is None:
                self._inflight = self._wal.read_batch(self._batch_max_lines)
                self._forget_progress()
            batch = self._inflight
            if batch is None:
                return self._idle_poll_s, False
            if self._holding:
                self._probe(batch.lines)
            self._deliver(batch.lines, 0, len(batch.lines))
            self._settle_refused(batch.lines)
            self._wal.ack(batch)
        except (TransientDeliveryError, AuthError, WalError) as e:
            return self._failed(e), False
        self._inflight = None
        self._recovered()
        return 0.0, True

    def _forget_progress(self) -> None:
        self._done_ranges.clear()
        self._split_ranges.clear()
        self._refused.clear()

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
                self._whole_rejections = 0
            except BatchTooLarge as e:
                self._split_or_refuse(lines, lo, hi, f"too large for the store: {e}")
            except RejectedBatch as e:
                self._split_or_refuse(lines, lo, hi, str(e))
        self._done_ranges.add((lo, hi))

    def _split_or_refuse(self, lines: list[bytes], lo: int, hi: int, reason: str) -> None:
        if hi - lo == 1:
            self._refused[lo] = reason
            return
        self._split_ranges.add((lo, hi))
        self._deliver_halves(lines, lo, hi)

    def _deliver_halves(self, lines: list[bytes], lo: int, hi: int) -> None:
        mid = (lo + hi) // 2
        self._deliver(lines, lo, mid)
        self._deliver(lines, mid, hi)

    def _settle_refused(self, lines: list[bytes]) -> None:
        """Dead-letter the batch's refused lines, unless the store refuses everything."""
        if not self._refused:
            return
        if len(self._refused) == len(lines) > 1:
            self._whole_rejections += 1
            if self._whole_rejections >= self._hold_after:
                reason = next(iter(self._refused.values()))
                self._holding = True
                self._forget_progress()
                raise _Held(
                    f"the store refused every line of {self._whole_rejections} batches in a "
                    f"row ({reason}): a proxy or the store itself is refusing everything; "
                    "holding the data in the write-ahead log",
                    retry_after_s=self._backoff_max_s,
                )
        self._dead_letter([(lines[i], reason) for i, reason in sorted(self._refused.items())])
        self._refused.clear()

    def _probe(self, lines: list[bytes]) -> None:
        """While holding: the whole batch, then one line of it; either accepted ends the hold."""
        try:
            self._transport.write(lines)
        except (RejectedBatch, BatchTooLarge):
            line = lines[self._probe_index % len(lines)]
            self._probe_index += 1
            try:
                self._transport.write([line])
            except (RejectedBatch, BatchTooLarge) as e:
                raise _Held(
                    f"the store still refuses every line ({e}); holding "
                    f"{self._wal.stats().queue_lines} lines in the write-ahead log",
                    retry_after_s=self._backoff_max_s,
                ) from e
        else:
            with self._lock:
                self._sent += len(lines)
            self._done_ranges.add((0, len(lines)))
        log.warning("the store accepts lines again: delivery goes on")
        self._holding = False
        self._whole_rejections = 0

    def _dead_letter(self, refused: list[tuple[bytes, str]]) -> None:
        self._dead_letters.write(refused, retry_after_s=self._backoff_max_s)
        with self._lock:
            self._dead_lettered += len(refused)
        for _, reason in refused:
            log.warning("dead-lettered a line the store refused: %s", reason)

    # -- failures ------------------------------------------------------------

    def _failed(self, error: DeliveryError | WalError) -> float:
        self._failures += 1
        with self._lock:
            self._retried += 1
            self._last_error = f"{type(error).__name__}: {error}"
            self._auth_failing = isinstance(error, AuthError)
        if isinstance(error, AuthError):
            if self._throttle.due("auth") is not None:
                log.error(
                    "the store refuses our credentials; %d lines kept in the write-ahead log "
                    "until they are fixed: %s",
                    self._wal.stats().queue_lines,
                    error,
                )
        elif isinstance(error, _Held | DeadLetterFull):
            if self._throttle.due(type(error).__name__) is not None:
                log.error("%s", error)
        else:
            log.warning("delivery failed (attempt %d), will retry: %s", self._failures, error)
        return self._backoff(getattr(error, "retry_after_s", None))

    def _backoff(self, retry_after_s: float | None = None) -> float:
        """Full jitter under a doubling ceiling, at least ``Retry-After`` but never longer
        than ``backoff_max_s``: a server asking for a day (or forever) waits that long."""
        ceiling_s = min(self._backoff_max_s, self._backoff_initial_s * 2 ** (self._failures - 1))
        delay_s = self._rng.uniform(0.0, ceiling_s)
        if retry_after_s is not None:
            delay_s = max(delay_s, min(retry_after_s, self._backoff_max_s))
        return delay_s

    def _crashed(self, error: Exception) -> float:
        """An exception nothing expected: log it with its traceback, count it, go on."""
        self._failures += 1
        with self._lock:
            self._errors += 1
            self._last_error = f"{type(error).__name__}: {error}"
        if self._throttle.due(f"crash {type(error).__name__}") is not None:
            log.error("sender: unexpected error, retrying the batch later", exc_info=error)
        return self._backoff()

    def _recovered(self) -> None:
        if self._failures:
            log.info("delivery recovered after %d failed attempts", self._failures)
        self._failures = 0
        for key in ("auth", "_Held", "DeadLetterFull"):
            self._throttle.reset(key)
        with self._lock:
            self._auth_failing = False
