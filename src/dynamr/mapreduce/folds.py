"""User functions of a known shape, recognised from their source so the engine can run them at C speed.

Combiners the map side can apply as a running value per key, instead of a list of values per key.
The classic word count emits ``(word, 1)`` per word and combines with ``yield word, sum(counts)``. Kept as a
list per key until the buffer fills, that costs an append per record and a list per key; a running sum
costs one dict update per record and no list. The map side does that when it knows the combiner is such a
fold, which it learns in one of two ways:

- the step says so: ``MRStep(combine="sum")``, or ``COMBINE = "sum"`` on a one-step job (``"min"`` and
  ``"max"`` too);
- the combiner is recognised: its whole body is ``yield <key>, sum(<values>)`` (or ``min``/``max``) over its
  own two parameters, read from its source. Nothing else is guessed: any other combiner keeps the general
  path, where it sees every key's values.

The fold's result is what the combiner would have produced (the sum of the values, in any grouping, is the
sum), so the reduce side sees the same records.

Reducers that pass every value through unchanged (:func:`is_identity`): the reduce side then writes the
merged records as they are, without grouping them and calling the reducer per key.

Mappers that never read their key (:func:`ignores_key`, from the bytecode): a text reader then gives them
``None`` for each line's byte offset instead of computing it (a tenth of what reading costs).
"""

from __future__ import annotations

import ast
import dis
import functools
import inspect
import operator
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

#: builtins a combiner may be recognised as (``yield key, sum(values)``)
RECOGNISED = ("sum", "min", "max")
#: folds a step may declare: those, and "add" (``a + b`` from the first value on: any type with ``+``,
#: strings and lists too, where ``sum`` starts from 0)
FOLDS = (*RECOGNISED, "add")


def detect(combiner: Callable[..., Any] | None) -> str | None:
    """The fold a combiner is exactly (``"sum"``, ``"min"``, ``"max"``), or None."""
    found = _only_statement(combiner)
    if found is None:
        return None
    params, stmt = found
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Yield)
            and isinstance(stmt.value.value, ast.Tuple) and len(stmt.value.value.elts) == 2):
        return None
    key, call = stmt.value.value.elts
    if not (isinstance(key, ast.Name) and key.id == params[0] and isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name) and call.func.id in RECOGNISED and not call.keywords
            and len(call.args) == 1 and isinstance(call.args[0], ast.Name) and call.args[0].id == params[1]):
        return None
    func = getattr(combiner, "__func__", combiner)
    if call.func.id in getattr(func, "__globals__", {}):  # sum, min or max redefined in the job's module
        return None
    return call.func.id


def is_identity(reducer: Callable[..., Any] | None) -> bool:
    """Whether a reducer's whole body is ``for value in values: yield key, value`` over its own two
    parameters: it passes its input through, so the merged records can go to the output without grouping
    them and calling it per key (Hadoop's IdentityReducer; TeraSort's reducer)."""
    found = _only_statement(reducer)
    if found is None:
        return False
    (key, values), stmt = found
    if not (isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Name) and not stmt.orelse
            and isinstance(stmt.iter, ast.Name) and stmt.iter.id == values and len(stmt.body) == 1):
        return False
    inner = stmt.body[0]
    if not (isinstance(inner, ast.Expr) and isinstance(inner.value, ast.Yield)
            and isinstance(inner.value.value, ast.Tuple) and len(inner.value.value.elts) == 2):
        return False
    first, second = inner.value.value.elts
    return (isinstance(first, ast.Name) and first.id == key and isinstance(second, ast.Name)
            and second.id == stmt.target.id and stmt.target.id not in (key, values))


#: names through which a function can see its own locals without naming them
_INTROSPECTION = frozenset({"locals", "vars", "eval", "exec", "_getframe", "currentframe", "stack", "getframeinfo",
                            "trace", "settrace", "breakpoint"})


def ignores_key(mapper: Callable[..., Any] | None) -> bool:
    """Whether a mapper (a plain function, or a method of the job) never reads its first parameter, the
    record's key: no instruction loads it, no nested function or comprehension captures it, and nothing
    could reach it by introspection (``locals()``, ``eval``, frames). Anything else, a callable object,
    ``*args``, a wrapper, counts as reading it."""
    if mapper is None:
        return False
    func = getattr(mapper, "__func__", mapper)
    code = getattr(func, "__code__", None)
    if code is None or not inspect.isfunction(func):
        return False
    skip = 1 if inspect.ismethod(mapper) else 0
    if code.co_argcount < skip + 2 or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        return False
    key = code.co_varnames[skip]
    if key in code.co_cellvars or _INTROSPECTION & set(code.co_names):
        return False
    return not any(ins.opname.startswith(("LOAD_FAST", "DELETE_FAST", "LOAD_CLOSURE", "LOAD_DEREF"))
                   and key in (ins.argval if isinstance(ins.argval, tuple) else (ins.argval,))
                   for ins in dis.get_instructions(code))


def _only_statement(fn: Callable[..., Any] | None) -> tuple[list[str], ast.stmt] | None:
    """A function's two parameters (``self`` left out) and the one statement of its body (a docstring
    aside), read from its source; None when it is not such a plain function."""
    if fn is None:
        return None
    func = getattr(fn, "__func__", fn)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef):
        return None
    node = tree.body[0]
    params = [a.arg for a in node.args.args]
    if inspect.ismethod(fn):
        params = params[1:]
    body = node.body[1:] if node.body and _is_docstring(node.body[0]) else node.body
    if len(params) != 2 or len(body) != 1 or node.decorator_list or node.args.vararg or node.args.kwarg:
        return None
    return params, body[0]


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def as_combiner(fold: str) -> Callable[[Any, Iterable[Any]], Iterable[tuple[Any, Any]]]:
    """The combiner a fold stands for (used where runs are merged)."""
    reducers: dict[str, Callable[[Iterable[Any]], Any]] = {
        "sum": sum, "min": min, "max": max, "add": functools.partial(functools.reduce, operator.add)}
    reduce = reducers[fold]

    def combiner(key: Any, values: Iterable[Any]) -> Iterable[tuple[Any, Any]]:
        yield key, reduce(values)

    return combiner
