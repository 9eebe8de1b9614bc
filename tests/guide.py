"""The game files that docs/new-game.md builds, extracted from the guide's Python blocks: guess_game.py from the
plain ```python blocks, haggle_game.py (the two-role game) from the blocks marked ```python haggle_game.py."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "new-game.md"


GUESS, HAGGLE = "guess_game.py", "haggle_game.py"


def guide_code(name: str = GUESS) -> str:
    """The guide's blocks of one file, in order: the complete file."""
    tag = "" if name == GUESS else " " + re.escape(name)
    blocks = re.findall(rf"```python{tag}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.DOTALL)
    return "\n\n".join(blocks)


def write_guide_game(folder: Path, name: str = GUESS) -> Path:
    path = folder / name
    path.write_text(guide_code(name), encoding="utf-8")
    return path


_shared: dict[str, Path] = {}


def guide_game_file(name: str = GUESS) -> Path:
    """One copy of each of the guide's games per test session (loading two copies would register its game
    twice). They live in a temporary folder that is removed when the session's process exits."""
    if name not in _shared:
        folder = Path(tempfile.mkdtemp(prefix="arena-guide-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _shared[name] = write_guide_game(folder, name)
    return _shared[name]
