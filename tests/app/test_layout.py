"""The library apart from the experiments: no module of convngc imports convngc.experiments, except the command
line handing `convngc reproduce` over (inside its main, so `import convngc.cli` does not load it)."""
import ast
import pathlib

ROOT = next(p for p in pathlib.Path(__file__).resolve().parents if (p / "setup.py").is_file()) / "convngc"


def _imports_of_experiments(path):
    """(line, enclosing function or None) of every import of convngc.experiments in a library module."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.ImportFrom):
                mod = "." * child.level + (child.module or "")
                names = [a.name for a in child.names]
                if "experiments" in mod.split(".") or (mod.strip(".") in ("", "convngc") and "experiments" in names):
                    found.append((child.lineno, func))
            elif isinstance(child, ast.Import) and any(a.name.startswith("convngc.experiments") for a in child.names):
                found.append((child.lineno, func))
            visit(child, f)
    visit(tree, None)
    return found


def test_the_library_does_not_import_the_experiments():
    library = [p for p in ROOT.rglob("*.py") if "experiments" not in p.relative_to(ROOT).parts]
    assert len(library) > 20
    found = {str(p.relative_to(ROOT)): _imports_of_experiments(p) for p in library}
    found = {k: v for k, v in found.items() if v}
    assert set(found) == {"cli.py"}, found
    assert all(func == "main" for _, func in found["cli.py"]), found


def test_the_experiments_package_holds_the_reproduction_and_the_study():
    names = {p.stem for p in (ROOT / "experiments").glob("*.py")}
    assert {"reproduce", "study", "study_report", "seeds", "baselines", "autoencoder"} <= names
    assert not {"reproduce", "study", "study_report", "seeds", "baselines", "autoencoder"} & \
        {p.stem for p in ROOT.glob("*.py")}
