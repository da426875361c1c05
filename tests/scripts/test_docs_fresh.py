"""The docs cannot drift: generated flag pages match the parsers, and every relative link resolves."""
import argparse
import re
from pathlib import Path

import torch

from scripts import gen_docs

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(path: Path) -> list[str]:
    """Targets of the Markdown links and images of ``path`` outside code (fenced blocks and inline spans)."""
    targets, fenced = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            targets += LINK.findall(re.sub(r"`[^`]*`", "", line))
    return [t for t in targets if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", t) and not t.startswith("#")]


def broken_links(paths: list[Path]) -> list[str]:
    broken = []
    for path in paths:
        for target in relative_links(path):
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.parent.name}/{path.name}: {target}")
    return broken


def test_generated_flag_pages_are_fresh():
    problems = gen_docs.check()
    assert not problems, "\n".join(problems) + "\nrun: python scripts/gen_docs.py"


def test_every_relative_link_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert len(pages) > 10
    assert broken_links(pages) == []


def test_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("x\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text("[ok](here.md#part) ![img](missing.png) [web](https://example.org/x.md) [anchor](#top)\n"
                    "`[code](nowhere.md)` and\n```\n[fenced](nowhere.md)\n```\n[up](../gone.md)\n")
    assert broken_links([page]) == ["docs/page.md: missing.png", "docs/page.md: ../gone.md"]


def test_check_finds_stale_missing_and_orphaned_pages(tmp_path):
    changed, errors = gen_docs.write(tmp_path)
    assert errors == [] and {p.name for p in changed} >= {"cf10.md", "shd.md", "digits_sweep.md", "index.md"}
    assert gen_docs.check(tmp_path) == []
    with open(tmp_path / "cf10.md", "a") as f:
        f.write("| `--hand-edited` | — | drifted |\n")
    (tmp_path / "shd.md").unlink()
    (tmp_path / "old.md").write_text(gen_docs.MARK + "\n# a script that is gone\n")
    (tmp_path / "notes.md").write_text("hand-written, not generated\n")
    problems = gen_docs.check(tmp_path)
    assert sorted(line.split("/")[-1] for line in problems) == [
        "cf10.md: stale", "old.md: no script generates it any more (delete it)", "shd.md: missing"]
    gen_docs.write(tmp_path)
    assert gen_docs.check(tmp_path) == [] and not (tmp_path / "old.md").exists() and (tmp_path / "notes.md").exists()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="demo")
    p.add_argument("paths", nargs="+", help="inputs")
    g = p.add_argument_group("run")
    g.add_argument("-b", "--batch-size", type=int, default=64, help="batch | size <n> *per* `rank|x`")
    g.add_argument("--out", type=Path, default=gen_docs.ROOT / "runs" / "x", help="folder (default %(default)s)")
    g.add_argument("--mode", default="a", choices=["a", "b"])
    g.add_argument("--mask", action=argparse.BooleanOptionalAction, default=True, help="mask")
    g.add_argument("--amp", action="store_true", help="mixed precision")
    g.add_argument("--resume", default=None, metavar="PATH", help="checkpoint")
    g.add_argument("--secret", help=argparse.SUPPRESS)
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def test_tables_render_a_parser():
    parsers = []
    for machine in gen_docs.MACHINES:
        with gen_docs.pretend_machine(**machine):
            parsers.append(_parser())
    lines, machine_dependent = gen_docs.tables(*parsers)
    assert machine_dependent
    assert lines == [
        "", "## positional arguments", "", "| flag | default | meaning |", "|---|---|---|",
        "| `paths ...` | — | inputs |",
        "", "## run", "", "| flag | default | meaning |", "|---|---|---|",
        "| `-b`, `--batch-size` | `64` | batch \\| size \\<n> \\*per\\* `rank\\|x` |",
        "| `--out` | `runs/x` | folder (default runs/x) |",
        "| `--mode` | `a` | (one of: a, b) |",
        "| `--mask`, `--no-mask` | on | mask |",
        "| `--amp` | off | mixed precision |",
        "| `--resume PATH` | — | checkpoint |",
        "| `--device` | `cpu` / `cuda` ¹ |  |",
    ]
