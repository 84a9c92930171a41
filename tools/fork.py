"""Point a fork of the course at itself: ``make fork ORG=owner [TAG=name]`` (``python -m tools.fork``).

Rewrites the Colab set-up cell of every solution notebook, regenerates the learner notebooks
from them (``tools.release``), and rewrites the README's Colab and Binder links and the grading
image's tag (:mod:`tools.publish`). Then commit, tag and push: Colab and Binder install exactly
the tagged commit.

The tag must be a name of the fork's own: a fork inherits the kit's tags (``v0.2.0``...), so
``git tag v0.2.0`` would fail, and pushing it would point at the kit's commit, not the fork's.
The default is ``<owner>-v<kit version>``, e.g. ``myuni-v0.2.0``.

Usage::

    python -m tools.fork --org myuni                     # https://github.com/myuni/fashion-visual-search-kit
    python -m tools.fork --org myuni/ml-course --tag ml-course-2025   # a fork renamed on GitHub
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from helper_utils.cli import ArgumentParser, one_line
from helper_utils.paths import REPO
from tools import publish, release

__all__ = ["target", "fork", "main"]


def target(org: str, tag: str | None = None, root: Path = REPO) -> publish.Release:
    """The release ``org`` (``owner`` or ``owner/name``) and ``tag`` name; the name and tag have defaults."""
    owner, _, name = org.partition("/")
    name = name or publish.current(root).name  # a fork keeps the kit's repository name unless it says otherwise
    tag = tag or f"{owner}-v{metadata.version('fashion-visual-search-kit')}"
    return publish.Release(owner, name, tag).validate()


def _tag_exists(root: Path, tag: str) -> bool:
    run = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}"],
                         capture_output=True, text=True)
    return run.returncode == 0


def fork(org: str, tag: str | None = None, root: Path = REPO) -> tuple[publish.Release, list[Path]]:
    """Point every launch point at ``org``/``tag`` and regenerate the learner notebooks; returns what changed."""
    wanted = target(org, tag, root)
    if _tag_exists(root, wanted.tag):
        raise ValueError(f"tag {wanted.tag!r} already exists in this clone (a fork inherits the kit's tags): "
                         f"give TAG a name of your own, e.g. {wanted.owner}-{wanted.tag}")
    changed = publish.point_at(wanted, root)
    changed += release.release(root / "notebooks" / "solutions", root / "notebooks")
    return wanted, changed


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tools.fork", description=__doc__.splitlines()[0])
    parser.add_argument("--org", required=True, help="the fork's GitHub owner, or owner/name if it was renamed")
    parser.add_argument("--tag", help="the fork's release tag (default: <owner>-v<kit version>)")
    args = parser.parse_args(argv)
    root = REPO
    try:
        wanted, changed = fork(args.org, args.tag, root)
    except (ValueError, OSError, release.ReleaseError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"written: {path.relative_to(root)}")
    print(f"The course now installs from {wanted.repository} at tag {wanted.tag}. Next:\n"
          f"  python -m tools.release --check --publish\n"
          f"  git commit -am 'Point the course at {wanted.owner}/{wanted.name} {wanted.tag}'\n"
          f"  git tag {wanted.tag} && git push origin HEAD {wanted.tag}")
    left = publish.problems(root, publish=True)
    for problem in left:
        print(f"fork: {problem}", file=sys.stderr)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
