"""The course's notebook conventions, checked on every notebooks/NN_*.ipynb without running it."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.ipkernel import IPythonKernel

from helpers.machinery.notebook import read_repository, repository

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAME = re.compile(r"^(\d\d)_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
NAV_MARKER = "<!--NAVIGATION-->"
GITHUB_NAME = re.compile(r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+/[\w-]+(?:\.(?!git\b)[\w-]+)*)")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def colab_link(name: str) -> str:
    return f"https://colab.research.google.com/github/{repository()}/blob/main/notebooks/{name}"


def links(text: str) -> list[str]:
    """Targets of the markdown links in a text."""
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request) -> tuple[Path, nbformat.NotebookNode]:
    return request.param, read(request.param)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


def test_names_are_numbered_in_sequence():
    assert all(NAME.match(p.name) for p in NOTEBOOKS), [p.name for p in NOTEBOOKS if not NAME.match(p.name)]
    assert [int(NAME.match(p.name).group(1)) for p in NOTEBOOKS] == list(range(1, len(NOTEBOOKS) + 1))
    strays = [p.name for p in (ROOT / "notebooks").glob("*.ipynb") if p not in NOTEBOOKS]
    assert not strays, f"notebooks that do not follow NN_snake_case.ipynb: {strays}"


def test_valid_and_committed_clean(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    # What JupyterLab writes on save, so that opening a notebook does not mark it modified
    assert nb.metadata.kernelspec == {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    expected = {**IPythonKernel.language_info, "version": nb.metadata.language_info.get("version")}
    assert nb.metadata.language_info == expected and expected["version"].startswith("3.11.")  # environment.yml's
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count"
        assert not {"execution", "ExecuteTime", "papermill"} & set(cell.metadata), f"cell {i} has run metadata"


def test_first_cell_has_title_badge_and_run_time(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "the first cell is a markdown title"
    assert f"[![Open In Colab]({COLAB_BADGE})]({colab_link(path.name)})" in first.source
    assert "Run time" in first.source and "fixture" in first.source and "Flickr8k" in first.source


def test_every_colab_and_github_link_points_at_this_repository(notebook):
    path, nb = notebook
    text = "\n".join(cell.source for cell in nb.cells)
    assert set(GITHUB_NAME.findall(text)) == {repository()}
    for link in re.findall(r"https://colab\.research\.google\.com/github/[^)\s\"']+", text):
        assert link == colab_link(path.name), f"Colab link to another file: {link}"


def test_setup_section(notebook):
    path, nb = notebook
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    setup = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Setup")]
    assert len(setup) == 1, "one '## Setup' section"
    assert "docs/troubleshooting.md" in nb.cells[setup[0]].source
    assert nb.cells[setup[0] + 1] is code[0], "the Colab install cell opens the Setup section"
    colab = code[0].source
    assert 'if "google.colab" in sys.modules:' in colab and "%pip install" in colab
    assert f"https://github.com/{repository()} " in colab


def test_colab_cell_is_the_same_in_every_notebook():
    firsts = {p.name: next(c.source for c in read(p).cells if c.cell_type == "code") for p in NOTEBOOKS}
    assert len(set(firsts.values())) == 1, "the Colab install cells differ: keep them identical"


def test_the_drive_cell_follows_the_install_cell_as_the_readme_shows_it(notebook):
    """On Colab the work is kept on Google Drive before anything reads the work folder (helpers.machinery.notebook)."""
    path, nb = notebook
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    drive = code[1]
    assert drive.id == f"{path.name[:2]}-drive" and "\nKEEP_WORK_ON_DRIVE = False\n" in drive.source  # opt-in
    assert drive.source.endswith("\nkeep_work_on_drive() if KEEP_WORK_ON_DRIVE else None")
    assert f"```python\n{drive.source}\n```" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert not any("keep_work_on_drive" in cell.source for cell in code[2:])


def test_one_parameters_cell_of_plain_assignments(notebook):
    path, nb = notebook
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged 'parameters', expected exactly one"
    assert tagged[0].cell_type == "code"
    statements = ast.parse(tagged[0].source).body
    assert statements, "the parameters cell is empty"
    for statement in statements:
        assert isinstance(statement, (ast.Assign, ast.AnnAssign)), f"not an assignment: {ast.unparse(statement)}"
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        assert all(isinstance(t, ast.Name) and t.id.isupper() for t in targets), ast.unparse(statement)


def test_no_sys_path_edits(notebook):
    path, nb = notebook
    edits = [c for c in nb.cells if c.cell_type == "code" and "sys.path" in c.source]
    assert not edits, "import `helpers` as an installed package, never through sys.path"


@pytest.mark.parametrize("index", range(len(NOTEBOOKS)), ids=[p.name for p in NOTEBOOKS])
def test_last_cell_navigates_to_the_neighbours(index):
    nb = read(NOTEBOOKS[index])
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith(f"## Navigation\n\n{NAV_MARKER}"), \
        f"the last cell is the navigation cell, a heading (it ends the last collapsed solution) then {NAV_MARKER}"
    targets = links(last.source)
    if index + 1 < len(NOTEBOOKS):
        assert NOTEBOOKS[index + 1].name in targets, f"the last cell should link to {NOTEBOOKS[index + 1].name}"
        assert "[Next: " in last.source
    if index > 0:
        assert NOTEBOOKS[index - 1].name in targets, f"the last cell should link to {NOTEBOOKS[index - 1].name}"
    assert sum(NAV_MARKER in cell.source for cell in nb.cells) == 1


def test_exercises_have_a_turn_cell_and_a_collapsed_solution(notebook):
    """### Exercise N, a cell for the learner's answer, then the solution: collapsed in JupyterLab and Colab."""
    path, nb = notebook
    cells = nb.cells
    starts = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("### Exercise ")]
    assert starts, "no exercises"
    collapsed = []
    for number, i in enumerate(starts, 1):
        assert cells[i].source.startswith(f"### Exercise {number}\n"), cells[i].source[:40]
        turn, solution = cells[i + 1], cells[i + 2]
        if turn.cell_type == "code":  # a code exercise: an empty cell to write in, then a collapsed heading
            assert turn.source.startswith("# Your turn") and "\n" not in turn.source.strip()
            assert solution.source == f"#### Solution {number}", solution.source[:40]
            assert solution.metadata.get("jp-MarkdownHeadingCollapsed") is True  # JupyterLab keeps it collapsed
            collapsed.append(solution.metadata["id"])  # Colab's collapsed sections name a cell's metadata id
            assert cells[i + 3].cell_type == "code" and "solution" in cells[i + 3].metadata.get("tags", [])
        else:  # a question to think about: a cell for the answer, then the answer folded in <details>
            assert turn.source.startswith("*Your answer:*")
            assert solution.source.startswith("<details><summary>Solution")
    assert nb.metadata.get("colab", {}).get("collapsed_sections") == collapsed


def test_notebook_links_point_at_existing_notebooks():
    """Links between notebooks must not dangle (the last notebook may already name the next one)."""
    for index, path in enumerate(NOTEBOOKS):
        for target in {t for cell in read(path).cells for t in links(cell.source) if NAME.match(t)}:
            if index == len(NOTEBOOKS) - 1 and int(target[:2]) == index + 2:
                continue
            assert (ROOT / "notebooks" / target).is_file(), f"{path.name} links to missing {target}"


def copy_course(tmp_path: Path) -> Path:
    """The files set_repository.py touches, copied into a scratch course folder."""
    root = tmp_path / "course"
    (root / "helpers" / "machinery").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "helpers/machinery/notebook.py"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    if (ROOT / "docs").is_dir():
        shutil.copytree(ROOT / "docs", root / "docs")
    return root


def set_repository(root: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "set_repository.py"), name, "--root", str(root)],
                          capture_output=True, text=True)


def test_set_repository_rewrites_every_copy(tmp_path):
    root, old, new = copy_course(tmp_path), repository(), "my-org/my.course"
    result = set_repository(root, new)
    assert result.returncode == 0, result.stderr
    assert read_repository(root / "pyproject.toml") == new
    fallback = root / "helpers" / "machinery" / "notebook.py"
    assert f'FALLBACK_REPOSITORY = "{new}"' in fallback.read_text(encoding="utf-8")
    for path in [root / "README.md", fallback, *(root / "notebooks").glob("*.ipynb")]:
        assert old not in path.read_text(encoding="utf-8"), f"{path.name} still names {old}"
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        nb = read(path)
        nbformat.validate(nb)
        colab = f"https://colab.research.google.com/github/{new}/blob/main/notebooks/{path.name}"
        assert f"]({colab})" in nb.cells[0].source
        assert f"https://github.com/{new} " in next(c.source for c in nb.cells if c.cell_type == "code")
        assert set(GITHUB_NAME.findall("\n".join(c.source for c in nb.cells))) == {new}

    back = set_repository(root, old)  # and back: the files are as they were
    assert back.returncode == 0, back.stderr
    for name in ["pyproject.toml", "README.md", "helpers/machinery/notebook.py",
                 *(f"notebooks/{p.name}" for p in NOTEBOOKS)]:
        assert (root / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_set_repository_leaves_longer_names_alone(tmp_path):
    root, old = copy_course(tmp_path), repository()
    readme = root / "README.md"
    readme.write_text(f"https://github.com/{old}-extras and https://github.com/{old}.git\n", encoding="utf-8")
    assert set_repository(root, "a/b").returncode == 0
    assert readme.read_text(encoding="utf-8") == f"https://github.com/{old}-extras and https://github.com/a/b.git\n"


def test_set_repository_rejects_a_bad_name(tmp_path):
    root = copy_course(tmp_path)
    result = set_repository(root, "not a repository")
    assert result.returncode != 0 and "OWNER/NAME" in result.stderr
    assert (root / "pyproject.toml").read_bytes() == (ROOT / "pyproject.toml").read_bytes()
