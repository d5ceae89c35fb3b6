"""Point the course at another GitHub repository: `python tools/set_repository.py OWNER/NAME`.

Rewrites the one setting (`[tool.course] repository` in pyproject.toml) and every copy of the old
owner/name: Colab badges and the Colab setup cell of notebooks/*.ipynb, links in README.md and docs/,
and the fallback in helpers/machinery/notebook.py. Notebooks are edited as text, so nothing else in them changes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
FALLBACK = re.compile(r'^(FALLBACK_REPOSITORY = ")[^"]*(")', re.MULTILINE)
SETTING = re.compile(r'^(\[tool\.course\][^\[]*?^repository\s*=\s*")([^"]+)(")', re.MULTILINE | re.DOTALL)


def current(root: Path) -> str:
    """The repository now set in pyproject.toml."""
    found = SETTING.search((root / "pyproject.toml").read_text(encoding="utf-8"))
    if not found:
        raise SystemExit(f"{root / 'pyproject.toml'} has no `[tool.course] repository = \"OWNER/NAME\"` line.")
    return found.group(2)


def files_to_rewrite(root: Path) -> list[Path]:
    """Every file that may hold a copy of the owner/name."""
    files = [root / "README.md", root / "helpers" / "machinery" / "notebook.py",
             *sorted((root / "notebooks").glob("*.ipynb")),
             *sorted((root / "docs").glob("**/*.md"))]
    return [f for f in files if f.is_file() and ".ipynb_checkpoints" not in f.parts]


def replace_name(text: str, old: str, new: str) -> tuple[str, int]:
    """Replace `old` where it stands as a whole owner/name (not inside a longer one)."""
    pattern = re.compile(r"(?<![\w.-])" + re.escape(old) + r"(?![\w-]|\.(?!git\b)\w)")
    return pattern.subn(lambda _: new, text)


def set_repository(root: Path, new: str) -> dict[str, int]:
    """Rewrite the setting and every copy of the old owner/name; returns replacements per changed file."""
    if not NAME.match(new):
        raise SystemExit(f"{new!r} is not a GitHub OWNER/NAME (for example my-org/cnn-lstm-captioning).")
    old = current(root)
    changed = {}
    pyproject = root / "pyproject.toml"
    text = pyproject.read_bytes().decode("utf-8")
    if old != new:
        pyproject.write_bytes(SETTING.sub(lambda m: m.group(1) + new + m.group(3), text, count=1).encode("utf-8"))
        changed["pyproject.toml"] = 1
    for path in files_to_rewrite(root):
        text = path.read_bytes().decode("utf-8")  # bytes: line ends stay as they are
        rewritten, count = replace_name(text, old, new)
        if path.name == "notebook.py":  # the fallback, even if it had drifted from the setting
            rewritten = FALLBACK.sub(lambda m: m.group(1) + new + m.group(2), rewritten)
        if rewritten != text:
            path.write_bytes(rewritten.encode("utf-8"))
            changed[path.relative_to(root).as_posix()] = max(count, 1)
    return changed


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", help="GitHub OWNER/NAME")
    parser.add_argument("--root", type=Path, default=ROOT, help="course folder (default: this repository)")
    args = parser.parse_args(argv)
    old = current(args.root)
    changed = set_repository(args.root, args.repository)
    for name, count in changed.items():
        print(f"{name}: {count} replaced")
    print(f"Repository set to {args.repository} (was {old}); {len(changed)} files changed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
