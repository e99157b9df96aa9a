"""A listener that records every window boundary it receives (what the split-forward tests check)."""

from __future__ import annotations

from mambaprof.collectors.markers import Window


class WindowRecorder:
    """Records ("enter" | "exit", window) in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Window]] = []

    def enter(self, w: Window) -> None:
        self.events.append(("enter", w))

    def exit(self, w: Window) -> None:
        self.events.append(("exit", w))

    @property
    def entered(self) -> set[tuple[int, str]]:
        """(layer, name) of every window entered."""
        return {(w.layer, w.name) for kind, w in self.events if kind == "enter"}

    def assert_properly_nested(self) -> None:
        """Every enter has its exit, in LIFO order."""
        stack: list[Window] = []
        for kind, w in self.events:
            if kind == "enter":
                stack.append(w)
            else:
                assert stack.pop() == w
        assert not stack
