"""Criteria: simple conditions (parsed here, never eval'd), regex, JSONPath (RFC 9535) and XPath."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonpath

from modelport.workflows.expressions import Context, ExpressionError, evaluate, is_expression


class CriterionError(Exception):
    """The criterion itself is malformed (not: it evaluated to false)."""


# -- simple conditions -----------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<op>&&|\|\||==|!=|<=|>=|<|>|!|\(|\))
    | (?P<string>'(?:[^']|'')*')
    | (?P<dstring>"(?:[^"\\]|\\.)*")
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<word>true|false|null)\b
    | (?P<expr>\$[^\s()=!<>&|]+)
    )""", re.VERBOSE)


@dataclass
class _Literal:
    value: Any


def _tokens(condition: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(condition):
        if condition[position:].strip() == "":
            break
        match = _TOKEN.match(condition, position)
        if match is None:
            raise CriterionError(f"cannot read {condition[position:]!r} in condition {condition!r}")
        position = match.end()
        kind = match.lastgroup
        text = match.group(kind)
        if kind == "string":
            tokens.append(("value", text[1:-1].replace("''", "'")))
        elif kind == "dstring":
            tokens.append(("value", bytes(text[1:-1], "utf-8").decode("unicode_escape")))
        elif kind == "number":
            tokens.append(("value", float(text) if any(c in text for c in ".eE") else int(text)))
        elif kind == "word":
            tokens.append(("value", {"true": True, "false": False, "null": None}[text]))
        else:
            tokens.append((kind, text))
    return tokens


class _Parser:
    """or := and ('||' and)* ; and := not ('&&' not)* ; not := '!' not | cmp ;
    cmp := atom (op atom)? ; atom := '(' or ')' | value | expression"""

    def __init__(self, tokens: list[tuple[str, Any]], ctx: Context, condition: str) -> None:
        self.tokens = tokens
        self.i = 0
        self.ctx = ctx
        self.condition = condition

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise CriterionError(f"condition {self.condition!r} ends too early")
        self.i += 1
        return token

    def parse(self) -> bool:
        value = self.parse_or()
        if self.peek() is not None:
            raise CriterionError(f"unexpected {self.peek()[1]!r} in condition {self.condition!r}")  # type: ignore[index]
        return _truthy(value)

    def parse_or(self) -> Any:
        value = self.parse_and()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.parse_and()
            value = _truthy(value) or _truthy(right)
        return value

    def parse_and(self) -> Any:
        value = self.parse_not()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.parse_not()
            value = _truthy(value) and _truthy(right)
        return value

    def parse_not(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not _truthy(self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self) -> Any:
        left = self.parse_atom()
        token = self.peek()
        if token and token[0] == "op" and token[1] in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return compare(left, token[1], self.parse_atom())
        return left

    def parse_atom(self) -> Any:
        kind, value = self.take()
        if (kind, value) == ("op", "("):
            inner = self.parse_or()
            if self.take() != ("op", ")"):
                raise CriterionError(f"missing ')' in condition {self.condition!r}")
            return inner
        if kind == "value":
            return value
        if kind == "expr":
            try:
                return evaluate(value, self.ctx)
            except ExpressionError:
                return None  # an absent value compares as null
        raise CriterionError(f"unexpected {value!r} in condition {self.condition!r}")


def _truthy(value: Any) -> bool:
    return bool(value)


def compare(left: Any, op: str, right: Any) -> bool:
    """Numbers numerically (a numeric string counts as a number), strings case-insensitively."""
    left, right = _comparable(left), _comparable(right)
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        return False


def _comparable(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def simple(condition: str, ctx: Context) -> bool:
    return _Parser(_tokens(condition), ctx, condition).parse()


# -- JSONPath, regex, XPath ------------------------------------------------------------------------------------------

_LENIENT_JSONPATH = re.compile(r"^\s*(\$[^=!<>]*?)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$")


def json_path(condition: str, context: Any, ctx: Context) -> bool:
    try:
        return bool(jsonpath.findall(condition, context))
    except jsonpath.JSONPathSyntaxError:
        match = _LENIENT_JSONPATH.match(condition)
        if match is None:
            raise CriterionError(f"{condition!r} is not an RFC 9535 JSONPath") from None
    # `$.EndpointStatus == "Creating"` (not RFC 9535, but common): evaluate the path, then compare.
    message = f"jsonpath condition {condition!r} is a comparison, not an RFC 9535 query"
    if ctx.strict:
        raise CriterionError(message + " (refused under --strict)")
    if message not in ctx.warnings:
        ctx.warnings.append(message)
    path, op, literal = match.groups()
    try:
        found = jsonpath.findall(path, context)
    except jsonpath.JSONPathSyntaxError as exc:
        raise CriterionError(f"{path!r} is not a JSONPath: {exc}") from None
    tokens = _tokens(literal)
    if len(tokens) != 1 or tokens[0][0] != "value":
        raise CriterionError(f"{literal!r} is not a literal")
    return compare(found[0] if found else None, op, tokens[0][1])


def regex(condition: str, context: Any) -> bool:
    try:
        return re.search(condition, context if isinstance(context, str) else _as_text(context)) is not None
    except re.error as exc:
        raise CriterionError(f"{condition!r} is not a regular expression: {exc}") from None


def xpath(condition: str, context: Any) -> bool:
    from lxml import etree

    try:
        document = etree.fromstring(context.encode() if isinstance(context, str) else context)
        result = document.xpath(condition)
    except (etree.XMLSyntaxError, ValueError, TypeError) as exc:
        raise CriterionError(f"the context is not XML: {exc}") from None
    except etree.XPathError as exc:
        raise CriterionError(f"{condition!r} is not an XPath: {exc}") from None
    return bool(result)


def _as_text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


def check(criterion: dict[str, Any], ctx: Context) -> bool:
    """One Criterion Object against the current context."""
    condition = criterion.get("condition")
    if not isinstance(condition, str):
        raise CriterionError("a criterion needs a condition")
    kind = criterion.get("type", "simple")
    if isinstance(kind, dict):  # {"type": "jsonpath", "version": "draft-goessner-dispatch-jsonpath-00"}
        kind = kind.get("type", "simple")
    context_expression = criterion.get("context")
    if kind == "simple":
        return simple(condition, ctx)
    if not context_expression:
        raise CriterionError(f"a {kind} criterion needs a context")
    if not is_expression(context_expression):
        raise CriterionError(f"context {context_expression!r} is not a runtime expression")
    try:
        context = evaluate(context_expression, ctx)
    except ExpressionError:
        return False
    if kind == "regex":
        return regex(condition, context)
    if kind == "jsonpath":
        return json_path(condition, context, ctx)
    if kind == "xpath":
        return xpath(condition, context)
    raise CriterionError(f"unknown criterion type {kind!r}")
