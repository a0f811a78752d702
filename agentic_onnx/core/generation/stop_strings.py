"""Stop strings over a stream of text: emit only what can no longer become a stop string."""

from __future__ import annotations

from collections.abc import Sequence


class StopStringMatcher:
    """Feed text as it streams; get back the part that is safe to show, and whether to stop.

    Text that might be the start of a stop string is held back until the next chunk settles it,
    so a stop string never reaches the user, even when it spans several tokens.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._pending = ""
        self.matched: str | None = None  # the stop string that ended the stream, once one did

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        self._pending += text
        found = [(index, stop) for stop in self._stops
                 if (index := self._pending.find(stop)) >= 0]
        if found:
            hit, self.matched = min(found, key=lambda pair: pair[0])
            safe, self._pending = self._pending[:hit], ""
            return safe, True
        keep = self._longest_stop_prefix_suffix()
        cut = len(self._pending) - keep
        safe, self._pending = self._pending[:cut], self._pending[cut:]
        return safe, False

    def flush(self) -> str:
        """The held-back text, once the stream has ended without a stop string."""
        rest, self._pending = self._pending, ""
        return rest

    def _longest_stop_prefix_suffix(self) -> int:
        pending = self._pending
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(pending)), longest, -1):
                if pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest
