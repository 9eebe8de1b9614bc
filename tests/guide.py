"""The game file that docs/new-game.md builds, extracted from the guide's Python blocks."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "new-game.md"


def guide_code() -> str:
    """The guide's ```python blocks, in order: the complete guess_game.py."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.DOTALL)
    return "\n\n".join(blocks)


def write_guide_game(folder: Path) -> Path:
    path = folder / "guess_game.py"
    path.write_text(guide_code(), encoding="utf-8")
    return path


_shared: Path | None = None


def guide_game_file() -> Path:
    """One copy of the guide's game per test session (loading two copies would register guess-v0 twice).

    It lives in a temporary folder that is removed when the session's process exits.
    """
    global _shared
    if _shared is None:
        folder = Path(tempfile.mkdtemp(prefix="arena-guide-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _shared = write_guide_game(folder)
    return _shared
