"""Deadline-aware admission: refuse a request at once (503 with Retry-After) when the answers already owed, at the
rate answers have been coming back, cannot all be given before its deadline.

A fixed queue bound (Serve's `max_ongoing_requests` / `max_queued_requests`) cannot tell whether an admitted
request will be answered in time: a replica that answers one conversation a second with 32 admitted has the last
one waiting 32 s, past a 10 s deadline, and it ends as a 504 after taking decode time. This estimate lets the
ingress say "retry later" while that is still cheap.

The rate is answers per second of busy time (time with something owed; idle time is not counted, so a quiet
server does not look slow) over the last `window` answers, so that it spans several decoded batches (answers of
one batch come back together). Until `min_answers` answers have been seen the estimate is unknown and everything
is admitted (the queue bounds still apply).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Admission:
    window: int = 128  # answers the rate is measured over
    min_answers: int = 16  # answers seen before the estimate is trusted
    clock: Callable[[], float] = time.monotonic
    owed: int = 0  # conversations sent to the model and not yet answered (or given up)
    busy_s: float = 0.0  # time with something owed, summed
    _tick_s: float = field(default=0.0, repr=False)
    _answers: deque = field(default_factory=deque, repr=False)  # busy_s at each recent answer

    def _advance(self) -> None:
        now = self.clock()
        if self.owed > 0:
            self.busy_s += now - self._tick_s
        self._tick_s = now

    def rate(self) -> float | None:
        """Answers per second of busy time, or None while unknown."""
        self._advance()
        if len(self._answers) < self.min_answers:
            return None
        span = self.busy_s - self._answers[0]  # up to now: the batch being decoded counts as time spent
        return (len(self._answers) - 1) / span if span > 0 else None

    def expected_wait_s(self, conversations: int) -> float | None:
        """How long `conversations` more would wait for their answers behind those owed, or None if unknown."""
        rate = self.rate()
        return None if rate is None else (self.owed + conversations) / rate

    def admits(self, conversations: int, remaining_s: float) -> bool:
        wait = self.expected_wait_s(conversations)
        return wait is None or wait <= remaining_s

    def begin(self, conversations: int) -> None:
        self._advance()
        self.owed += conversations

    def answered(self) -> None:
        self._advance()
        self._answers.append(self.busy_s)
        while len(self._answers) > self.window:
            self._answers.popleft()
        self.owed = max(0, self.owed - 1)

    def gave_up(self, conversations: int = 1) -> None:
        """Conversations no longer owed without an answer (the deadline, an error, a client gone)."""
        self._advance()
        self.owed = max(0, self.owed - conversations)


@dataclass
class DecodeCost:
    """A model replica's decode time for a batch of m conversations, from its recent batches, and which of a batch's
    conversations it can still answer before their deadlines.

    The ingress's estimate above sees answers come back in lumps (a batch's answers arrive together), so a request
    admitted just after a batch started waits for that batch and then for its own; the replica is where that is
    known: when a batch gets the engine, each conversation's deadline is checked against the batch's expected end,
    and one that would miss it is refused there and then (the ingress's 503, not a 504 after the decode time was
    spent). The expected time is a line a + b*m fitted to the recent batches: a batch's time grows far less than
    in proportion to its size (a fixed cost per decode step is shared by the whole batch), so scaling one small
    batch up would refuse, under load, requests a large batch could still answer in time. `margin` covers the
    fit's error. A batch larger than `reach` times the largest remembered one is never refused on the estimate: a
    line fitted to small batches alone (a fresh replica's first requests) extrapolates their noise, and a burst of
    requests with most of their deadline left was refused on it."""
    history: int = 32  # batches remembered
    margin: float = 1.15  # expected seconds times this must fit before the deadline
    reach: float = 2.0  # how far past the largest remembered batch size the estimate is trusted to refuse
    # The line follows 32 batches, so it lags a sudden slowdown (under overload the proxy and the ingress, busy
    # refusing, take CPU from the decode: batches ran ~1.5x the line, and the requests they held ended as 504s).
    # The largest of the newest `recent` batches' times over what the line expected for them, at least 1 and at
    # most `max_slowdown`, scales every estimate until the line has caught up. Looking at the newest 3 only, batches
    # still ran past the deadlines they were planned for (docs/serve.md, runs P and Q), so it looks further back.
    recent: int = 8
    max_slowdown: float = 3.0
    _batches: deque = field(default_factory=deque, repr=False)  # (size, seconds), newest last
    _ratios: deque = field(default_factory=deque, repr=False)  # newest batches' seconds / the line's, newest last

    def observe(self, size: int, seconds: float) -> None:
        if size > 0:
            fit = self.line()
            if fit is not None and fit[0] + fit[1] * size > 0:
                self._ratios.append(seconds / (fit[0] + fit[1] * size))
                while len(self._ratios) > self.recent:
                    self._ratios.popleft()
            self._batches.append((size, seconds))
            while len(self._batches) > self.history:
                self._batches.popleft()

    def slowdown(self) -> float:
        """How much slower than the line the newest batches ran (1: not slower), the factor on every estimate."""
        return min(self.max_slowdown, max([1.0, *self._ratios]))

    def line(self) -> tuple[float, float] | None:
        """(a, b): seconds = a + b * size, least squares over the remembered batches with a, b >= 0, or None before
        any batch was seen. One size seen (no slope to measure): the line through the origin, the cautious guess."""
        if not self._batches:
            return None
        n = len(self._batches)
        mean_m = sum(m for m, _ in self._batches) / n
        mean_t = sum(t for _, t in self._batches) / n
        var_m = sum((m - mean_m) ** 2 for m, _ in self._batches)
        if var_m > 0:
            b = sum((m - mean_m) * (t - mean_t) for m, t in self._batches) / var_m
            a = mean_t - b * mean_m
            if a >= 0 and b >= 0:
                return a, b
            if b < 0:  # bigger batches measured faster (noise): the mean time, whatever the size
                return mean_t, 0.0
        # the intercept would be negative (time grows faster than size): the least-squares line through the origin
        return 0.0, sum(m * t for m, t in self._batches) / sum(m * m for m, _ in self._batches)

    def _trusted_size(self) -> float:
        """The largest batch the estimate may refuse on (call with a batch remembered)."""
        return self.reach * max(m for m, _ in self._batches)

    def expected_s(self, size: int) -> float | None:
        """Seconds to decode a batch of `size` (the line, times the slowdown), or None before any batch was seen."""
        fit = self.line()
        return None if fit is None else self.slowdown() * (fit[0] + fit[1] * size)

    def schedule(self, deadlines: list[float | None], now: float) -> tuple[list[int], list[int], list[int]]:
        """Split a batch into (run, late, expired) indices: expired have passed their deadline (wall clock; None:
        none); of the rest, the most that can all end before each one's deadline run, taken latest deadline first,
        and the others are late (refused)."""
        expired = [i for i, d in enumerate(deadlines) if d is not None and d <= now]
        waiting = sorted((i for i, d in enumerate(deadlines) if d is None or d > now),
                         key=lambda i: -(deadlines[i] if deadlines[i] is not None else float("inf")))
        fit = self.line()  # once per batch, not once per conversation
        if fit is None:
            return sorted(waiting), [], expired
        trusted, factor = self._trusted_size(), self.margin * self.slowdown()
        run, late = [], []
        for i in waiting:  # deadlines fall along the list: the one being added is the earliest of those kept
            size = len(run) + 1
            end = now + factor * (fit[0] + fit[1] * size)
            fits = deadlines[i] is None or end <= deadlines[i] or size > trusted
            (run if fits else late).append(i)
        return sorted(run), sorted(late), expired

    def expected_end(self, now: float, running: tuple[float, int] | None, ahead: int,
                     max_batch: int) -> float | None:
        """When a conversation arriving at `now` would have its answer: after the running batch (its start, wall
        clock, and size; None: the engine is free) and the batches of the `ahead` conversations waiting before it,
        its own last, each at the expected time x margin. None while the cost is unknown or a batch would be past
        the estimate's reach. The replica refuses at once what this puts past the deadline: waiting would only
        end as a 504, after its deadline passed in the queue."""
        fit = self.line()
        if fit is None:
            return None
        sizes = [max_batch] * (ahead // max_batch) + [ahead % max_batch + 1]
        if max(sizes + [running[1] if running else 0]) > self._trusted_size():
            return None

        factor = self.margin * self.slowdown()

        def cost(m: int) -> float:
            return factor * (fit[0] + fit[1] * m)

        start = max(now, running[0] + cost(running[1])) if running else now
        return start + sum(cost(m) for m in sizes)
