"""The documentation holds together: every relative link of README.md, weights/README.md and
docs/**/*.md resolves to a file (and an anchor to a heading of that file), no page writes like a
lab notebook or cites material outside the repository, the registry tables equal the registry,
the README stays short, and every ```python block of the docs is valid Python."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "weights" / "README.md"]
               + list((ROOT / "docs").rglob("*.md")))
README_MAX_LINES = 150

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
# what a page for readers of the project never says
BANNED = ["the issue", "this session", "the helper", "../shared/docs", "shared/docs/"]


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (links there are not links)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text lower-cased, punctuation dropped, spaces
    turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose_keep_headings(path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def _prose_keep_headings(text: str) -> str:
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def links(path: Path) -> list[tuple[int, str]]:
    prose = _prose(path.read_text())
    return [(prose.count("\n", 0, m.start()) + 1, m.group(1)) for m in LINK.finditer(prose)]


def test_slug_follows_github():
    assert slug("### `dpir`: a known degradation".lstrip("# ")) == "dpir-a-known-degradation"
    assert slug("Other plug-and-play algorithms (ADMM, DRS, PGD, FISTA, RED)") == \
        "other-plug-and-play-algorithms-admm-drs-pgd-fista-red"
    assert slug("The paper's own A-step") == "the-papers-own-a-step"
    assert slug("Large images (memory)") == "large-images-memory"


def test_link_parser_finds_links_and_skips_code(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# T\n[a](x.md) ![i](fig/a.png) [b](x.md#t) `[c](no.md)`\n"
                    "```\n[d](no.md)\n```\n[e](https://example.org) [f](#t)\n")
    assert [t for _, t in links(page)] == ["x.md", "fig/a.png", "x.md#t", "https://example.org",
                                           "#t"]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    bad = []
    for line, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            bad.append(f"line {line}: {target} -> {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"line {line}: {target}: no heading with anchor #{anchor} in "
                       f"{dest.relative_to(ROOT) if ROOT in dest.parents else dest}")
    assert not bad, f"{_rel(page)}:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_written_for_a_reader(page):
    text = page.read_text()
    found = [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
             for phrase in BANNED for m in re.finditer(re.escape(phrase), text, re.I)]
    assert not found, (f"{_rel(page)} says {found}: write for a reader of the project (what was "
                       "measured, under which protocol, with which command); cite pages of this "
                       "repository, not ../shared/docs")


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_table_cells_keep_their_pipes(page):
    """A '|' inside inline code in a table row splits the cell (GitHub's tables): write '\\|'."""
    bad = []
    for i, line in enumerate(_prose_keep_headings(page.read_text()).splitlines(), 1):
        if line.startswith("|"):
            bad += [f"line {i}: {m.group(0)}" for m in re.finditer(r"(`+)(.+?)\1", line)
                    if re.search(r"(?<!\\)\|", m.group(2))]
    assert not bad, f"{_rel(page)}: unescaped | in table cells: {bad}"


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, (f"README.md has {n} lines (at most {README_MAX_LINES}): move "
                                   "details to a page under docs/ and link it")


def test_registry_tables_are_current():
    from dynpnp_jax.weights import weights_files_table, weights_table

    assert weights_table() in (ROOT / "docs" / "networks.md").read_text(), (
        "docs/networks.md: the registry table differs from the registry; paste the output of "
        "`python -m dynpnp_jax.weights_table` in place of the table")
    assert weights_files_table() in (ROOT / "weights" / "README.md").read_text(), (
        "weights/README.md: the per-file table differs from the registry; paste the output of "
        "`python -m dynpnp_jax.weights_table --files` in place of the table")


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "README.md" or p.parent != ROOT],
                         ids=_rel)
def test_python_blocks_parse(page):
    text = page.read_text()
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, m.start()) + 2
        try:
            ast.parse(m.group(1))
        except SyntaxError as err:
            pytest.fail(f"{_rel(page)} line {line + (err.lineno or 1) - 1}: the python block does "
                        f"not parse: {err.msg}")
