"""Where a release of the course is published from: one reader and one writer for every place that names it.

A release is a GitHub repository and a git tag. Three kinds of file name them, and must agree:

- the Colab set-up cell of every solution notebook (its ``REPO = "..."`` and ``TAG = "..."`` lines;
  the learner notebooks get it from there through ``tools.release``);
- the README's Colab and Binder links (``colab.research.google.com/github/OWNER/NAME/blob/TAG/...``,
  ``mybinder.org/v2/gh/OWNER/NAME/TAG``);
- the grading image of the cluster files (``image: [REGISTRY/]fashion-kit-grader:TAG`` in ``docs/grading/*.yaml``).

The kit itself is published under the placeholder owner ``<org>``: :func:`problems` with
``publish=True`` refuses it, and ``tools.fork`` replaces it with a fork's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from helper_utils.paths import REPO

__all__ = ["PLACEHOLDER", "Release", "current", "problems", "point_at"]

PLACEHOLDER = "<org>"  # the kit's own owner in every launch link until a fork sets its own
COLAB_TAG = "colab-setup"
IMAGE = "fashion-kit-grader"  # the grading image built from docs/grading/Dockerfile, tagged with the release

# GitHub's owner and repository names, and the tags a URL path can carry (no "/": it would end the path segment)
_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_NAME = r"[A-Za-z0-9._-]+"
_TAG = r"[A-Za-z0-9][A-Za-z0-9._-]*"

_REPO_LINE = re.compile(r'^REPO = "https://github\.com/(?P<owner>[^/"]+)/(?P<name>[^/"]+)"', re.M)
_TAG_LINE = re.compile(r'^TAG = "(?P<tag>[^"]*)"', re.M)
_COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/(?P<owner>[^/\s]+)/(?P<name>[^/\s]+)"
                         r"/blob/(?P<tag>[^/\s]+)/(?P<path>[^)\s]+)")
_BINDER_LINK = re.compile(r"https://mybinder\.org/v2/gh/(?P<owner>[^/\s]+)/(?P<name>[^/\s]+)/(?P<tag>[^?/\s)]+)")
# the image, pushed to a registry or not: "fashion-kit-grader:TAG", "ghcr.io/myuni/fashion-kit-grader:TAG"
_IMAGE_LINE = re.compile(rf"^(?P<start>[ \t]*image: (?:\S+/)?{IMAGE}):(?P<tag>\S+)", re.M)


@dataclass(frozen=True)
class Release:
    """A published release of the course: ``https://github.com/{owner}/{name}`` at git tag ``tag``."""

    owner: str
    name: str
    tag: str

    @property
    def repository(self) -> str:
        return f"https://github.com/{self.owner}/{self.name}"

    def validate(self) -> Release:
        """This release, or ``ValueError`` naming a part that GitHub or the launch links cannot take."""
        for part, value, pattern, allowed in (("owner", self.owner, _OWNER, "letters, digits and '-'"),
                                              ("repository name", self.name, _NAME, "letters, digits, '.', '_', '-'"),
                                              ("tag", self.tag, _TAG, "letters, digits, '.', '_', '-'")):
            if not re.fullmatch(pattern, value):
                raise ValueError(f"{part} {value!r}: use {allowed}"
                                 + (" (a '/' would end the Colab and Binder links' path segment)"
                                    if part == "tag" else ""))
        return self


def _solutions(root: Path) -> list[Path]:
    return sorted((root / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))


def _colab_cell(nb: nbformat.NotebookNode):
    return next((cell for cell in nb.cells if COLAB_TAG in cell.get("metadata", {}).get("tags", [])), None)


def _cell_release(source: str) -> Release | None:
    repo, tag = _REPO_LINE.search(source), _TAG_LINE.search(source)
    return Release(repo["owner"], repo["name"], tag["tag"]) if repo and tag else None


def _named(root: Path) -> list[tuple[str, dict | None]]:
    """(where, the parts of a release it names) for every place that names one; ``None`` where none is readable."""
    found: list[tuple[str, dict | None]] = []
    for path in _solutions(root):
        cell = _colab_cell(nbformat.read(path, as_version=4))
        release = _cell_release(cell.source) if cell else None
        found.append((f"{path.relative_to(root)} (Colab cell)", release and vars(release)))
    readme = root / "README.md"
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        for pattern, kind in ((_COLAB_LINK, "Colab"), (_BINDER_LINK, "Binder")):
            found += [(f"README.md ({kind} link)", {part: match[part] for part in ("owner", "name", "tag")})
                      for match in pattern.finditer(text)]
    for path in sorted((root / "docs" / "grading").glob("*.yaml")):
        found += [(f"{path.relative_to(root)} (image)", {"tag": match["tag"]})
                  for match in _IMAGE_LINE.finditer(path.read_text(encoding="utf-8"))]
    return found


def current(root: Path = REPO) -> Release:
    """The release notebook 01's Colab cell names: the one source the other places must agree with."""
    paths = _solutions(root)
    cell = _colab_cell(nbformat.read(paths[0], as_version=4)) if paths else None
    release = _cell_release(cell.source) if cell else None
    if release is None:
        raise ValueError(f"no Colab cell with REPO and TAG lines in {paths[0] if paths else root}")
    return release


def problems(root: Path = REPO, publish: bool = False) -> list[str]:
    """What disagrees with notebook 01's Colab cell; with ``publish``, also the placeholder owner left in place."""
    try:
        want = vars(current(root))
    except ValueError as error:
        return [str(error)]
    found = []
    for where, got in _named(root):
        if got is None:
            found.append(f"{where}: no REPO and TAG lines")
        elif any(got[part] != want[part] for part in got):
            found.append(f"{where} names {_show(got)}, the notebooks {_show(want)}")
    if publish and want["owner"] == PLACEHOLDER:
        found.append(f"the Colab cells and README links still name the placeholder owner {PLACEHOLDER}: "
                     f"run `make fork ORG=<your GitHub owner>` before publishing")
    return found


def _show(parts: dict) -> str:
    where = f"{parts['owner']}/{parts['name']} " if "owner" in parts else ""
    return f"{where}tag {parts['tag']!r}"


def point_at(release: Release, root: Path = REPO) -> list[Path]:
    """Name ``release`` in every solution notebook's Colab cell, the README's links and the grading image.

    Every new text is made before the first is written, so a file that cannot be rewritten changes nothing.
    Returns the files changed; ``tools.release`` then regenerates the learner notebooks from the solutions.
    """
    wanted: dict[Path, str] = {}
    for path in _solutions(root):
        nb = nbformat.read(path, as_version=4)
        cell = _colab_cell(nb)
        if cell is None or _cell_release(cell.source) is None:
            raise ValueError(f"{path.relative_to(root)}: no Colab cell with REPO and TAG lines")
        cell.source = _REPO_LINE.sub(f'REPO = "{release.repository}"', cell.source, count=1)
        cell.source = _TAG_LINE.sub(f'TAG = "{release.tag}"', cell.source, count=1)
        wanted[path] = nbformat.writes(nb) + "\n"  # as tools.release writes notebooks
    readme = root / "README.md"
    if readme.exists():
        text = _COLAB_LINK.sub(lambda m: f"https://colab.research.google.com/github/{release.owner}/{release.name}"
                                         f"/blob/{release.tag}/{m['path']}", readme.read_text(encoding="utf-8"))
        wanted[readme] = _BINDER_LINK.sub(f"https://mybinder.org/v2/gh/{release.owner}/{release.name}/{release.tag}",
                                          text)
    for path in sorted((root / "docs" / "grading").glob("*.yaml")):
        wanted[path] = _IMAGE_LINE.sub(lambda m: f"{m['start']}:{release.tag}",
                                       path.read_text(encoding="utf-8"))
    changed = [path for path, text in wanted.items() if path.read_text(encoding="utf-8") != text]
    for path in changed:
        path.write_text(wanted[path], encoding="utf-8")
    return changed
