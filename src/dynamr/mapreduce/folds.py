"""Combiners the map side can apply as a running value per key, instead of a list of values per key.

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
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

FOLDS = ("sum", "min", "max")


def detect(combiner: Callable[..., Any] | None) -> str | None:
    """The fold a combiner is exactly (``"sum"``, ``"min"``, ``"max"``), or None."""
    if combiner is None:
        return None
    func = getattr(combiner, "__func__", combiner)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef):
        return None
    fn = tree.body[0]
    params = [a.arg for a in fn.args.args]
    if inspect.ismethod(combiner):
        params = params[1:]
    body = fn.body[1:] if fn.body and _is_docstring(fn.body[0]) else fn.body
    if len(params) != 2 or len(body) != 1 or fn.decorator_list:
        return None
    stmt = body[0]
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Yield)
            and isinstance(stmt.value.value, ast.Tuple) and len(stmt.value.value.elts) == 2):
        return None
    key, call = stmt.value.value.elts
    if not (isinstance(key, ast.Name) and key.id == params[0] and isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name) and call.func.id in FOLDS and not call.keywords
            and len(call.args) == 1 and isinstance(call.args[0], ast.Name) and call.args[0].id == params[1]):
        return None
    if call.func.id in getattr(func, "__globals__", {}):  # sum, min or max redefined in the job's module
        return None
    return call.func.id


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def as_combiner(fold: str) -> Callable[[Any, Iterable[Any]], Iterable[tuple[Any, Any]]]:
    """The combiner a fold stands for (used where runs are merged)."""
    reducers: dict[str, Callable[[Iterable[Any]], Any]] = {"sum": sum, "min": min, "max": max}
    reduce = reducers[fold]

    def combiner(key: Any, values: Iterable[Any]) -> Iterable[tuple[Any, Any]]:
        yield key, reduce(values)

    return combiner
