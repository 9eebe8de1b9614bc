"""A person at the terminal plays a role: ``human``.

The person sees exactly what the role sees (its brief on the first turn, then
each observation) and types a move. End of input (Ctrl-D) or Ctrl-C raises
:class:`HumanQuit`, which the CLI turns into a clean exit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from agents.base import Completion, Policy, TurnRequest
from games.text import printable

__all__ = ["HumanPolicy", "HumanQuit"]


class HumanQuit(Exception):
    """The person at the terminal ended the game (EOF or Ctrl-C)."""


class HumanPolicy(Policy):
    """Asks a person for each move."""

    interactive = True
    batch_invariant = True

    def __init__(self, spec: str = "human", console: Console | None = None, read: Callable[[str], str] | None = None):
        super().__init__(spec)
        self.console = console or Console()
        self._read = read or (lambda prompt: self.console.input(prompt))
        self._briefed: set[tuple[str, str]] = set()

    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        return [self._ask(request) for request in requests]

    def _ask(self, request: TurnRequest) -> Completion:
        key = (request.episode, request.role)
        role = printable(request.role)
        if key not in self._briefed:
            self._briefed.add(key)
            system = next((m["content"] for m in request.messages if m["role"] == "system"), "")
            if system:
                self.console.print(Panel(Text(printable(system)), title=Text(f"You play {role}"), border_style="cyan"))
        seen = str(request.observation.get("text", ""))
        if seen:
            self.console.print(Panel(Text(printable(seen)), title=Text(f"{role} sees"), border_style="blue"))
        try:
            text = self._read(f"[bold]{escape(role)}>[/bold] ")
        except (EOFError, KeyboardInterrupt):
            raise HumanQuit(f"the player of {request.role} left the game") from None
        return Completion(text=text)

    def end_episode(self, episode: str) -> None:
        self._briefed = {k for k in self._briefed if k[0] != episode}
