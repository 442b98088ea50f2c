"""The lesson's definitions, without its steps: what the commands, the tests and the benchmarks use of
main.py. Nothing imports main.py, which would run the whole lesson."""
import ast
import sys
import types
from pathlib import Path

LESSON = Path(__file__).resolve().parent.parent / "main.py"
MODULE_NAME = "main"  # so that `import main` finds the definitions, and never runs the lesson by accident
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)


def _is_constant(node):
    """An assignment of a literal to a name, such as BACKBONE = ("conv1.", ...); not a step such as
    os.environ[...] = "1"."""
    if not isinstance(node, ast.Assign) or not all(isinstance(target, ast.Name) for target in node.targets):
        return False
    try:
        ast.literal_eval(node.value)
        return True
    except ValueError:
        return False


def definition_nodes(tree):
    """The preamble (every statement before the first function or class: the imports, and what must
    happen before MindSpore loads), then only imports, functions, classes and literal constants."""
    kept, defined = [], False
    for node in tree.body:
        defined = defined or isinstance(node, (ast.FunctionDef, ast.ClassDef))
        if not defined or isinstance(node, DEFINITIONS) or _is_constant(node):
            kept.append(node)
    return kept


def load_definitions(path=LESSON):
    """The module of the lesson's definitions, loaded once; its functions keep main.py's file name and
    line numbers, which MindSpore reads when it compiles a network."""
    module = sys.modules.get(MODULE_NAME)
    if module is not None and getattr(module, "__file__", None) == str(path):
        return module
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    tree.body = definition_nodes(tree)
    module = types.ModuleType(MODULE_NAME, ast.get_docstring(tree))
    module.__file__ = str(path)
    sys.modules[MODULE_NAME] = module
    try:
        exec(compile(tree, str(path), "exec"), module.__dict__)
    except BaseException:
        del sys.modules[MODULE_NAME]
        raise
    return module
