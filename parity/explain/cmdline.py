"""Set one argparse dest to a value on a recorded command line, from the parser's recorded option table.

The table (`schema.META_ARGPARSE_OPTIONS`) says which option strings write a dest, how many values each
takes, and its default and const. Every occurrence of the dest's options is removed (`--opt value`,
`--opt=value`, a flag, `--no-x`), then the tokens that give the wanted value are put where the first one
was (or appended): nothing is inferred from option names, and what cannot be written is refused with
the reason. The run that follows confirms the value took (attribute.py reads it back).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from parity.trace import schema

#: argparse takes a token that looks like a negative number as a value, not as an option.
_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+(e[-+]?\d+)?$|^-\d+e[-+]?\d+$", re.IGNORECASE)
#: nargs values whose tokens run to the end of the line: not rewritten.
_REST = ("...", "A...")


class NotSettable(Exception):
    """The value cannot be written on this command line; the message says why."""


@dataclass(frozen=True)
class Edit:
    """A command line with one dest set: the tokens removed, the tokens put in, and the result."""

    command: tuple[str, ...]
    removed: tuple[str, ...]
    added: tuple[str, ...]


def same_value(a: Any, b: Any) -> bool:
    """Equal as recorded JSON: 1 and 1.0, True and 1, 0.0 and -0.0 are different settings."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NUMBER.match(token)


def _values_taken(action: dict[str, Any], tokens: Sequence[str], start: int) -> int:
    """How many tokens after the option string are its values (argparse's nargs rules, simplified)."""
    nargs = action.get(schema.ARG_NARGS)
    if action.get(schema.ARG_ACTION) in (schema.ACTION_STORE_TRUE, schema.ACTION_STORE_FALSE, schema.ACTION_STORE_CONST,
                                         schema.ACTION_BOOLEAN_OPTIONAL, schema.ACTION_COUNT) or nargs == 0:
        return 0
    if isinstance(nargs, int):
        return nargs
    following = 0
    while start + following < len(tokens) and not _is_option(tokens[start + following]) and tokens[start + following] != "--":
        following += 1
    if nargs is None:
        return min(1, following)
    if nargs == "?":
        return min(1, following)
    return following  # "*", "+"


def _remove(command: Sequence[str], actions: list[dict[str, Any]]) -> tuple[list[str], list[str], int | None]:
    """The command without any option of `actions` (and their values), what was removed, and where."""
    by_option = {o: a for a in actions for o in a.get(schema.ARG_OPTIONS) or ()}
    tokens, removed, first = list(command), [], None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            break
        name, eq, _ = token.partition("=")
        if token in by_option:
            n = 1 + _values_taken(by_option[token], tokens, i + 1)
        elif eq and name in by_option and name.startswith("--"):
            n = 1
        else:
            i += 1
            continue
        first = i if first is None else first
        removed += tokens[i:i + n]
        del tokens[i:i + n]
    return tokens, removed, first


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    raise NotSettable(f"the value {value!r} cannot be written as a command-line token")


def _literal(value: Any) -> str:
    # Side commands are templates ({out}, {steps}): braces in a value stay literal.
    return _text(value).replace("{", "{{").replace("}", "}}")


def _long(options: Sequence[str], prefer_no: bool | None = None) -> str:
    chosen = [o for o in options if prefer_no is None or o.startswith("--no-") == prefer_no] or list(options)
    return next((o for o in chosen if o.startswith("--")), chosen[0])


def _tokens_for(actions: list[dict[str, Any]], value: Any) -> list[str]:
    """The tokens that make argparse store `value` in the dest, or NotSettable."""
    for action in actions:
        options, kind = action.get(schema.ARG_OPTIONS) or [], action.get(schema.ARG_ACTION)
        nargs = action.get(schema.ARG_NARGS)
        if not options:
            continue
        if kind == schema.ACTION_STORE_TRUE and value is True or kind == schema.ACTION_STORE_FALSE and value is False:
            return [_long(options)]
        if kind == schema.ACTION_STORE_CONST and same_value(action.get(schema.ARG_CONST), value):
            return [_long(options)]
        if kind == schema.ACTION_BOOLEAN_OPTIONAL and isinstance(value, bool):
            return [_long(options, prefer_no=not value)]
        if kind == schema.ACTION_COUNT and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return [_long(options)] * value
        if kind == schema.ACTION_STORE and nargs not in _REST and value is not None:
            if isinstance(value, list):
                if nargs in (None, "?") or isinstance(nargs, int) and nargs != len(value) or nargs == "+" and not value:
                    continue
                return [_long(options), *map(_literal, value)]
            if nargs in (None, "?"):
                return [_long(options), _literal(value)]
    kinds = ", ".join(sorted({str(a.get(schema.ARG_ACTION)) for a in actions}))
    raise NotSettable(f"no option of it ({kinds}) stores {value!r}")


def set_argument(command: Sequence[str], actions: list[dict[str, Any]], value: Any) -> Edit:
    """`command` with the dest of `actions` set to `value`: its options removed, then the value's tokens
    put in their place; where `value` is the dest's default, removing them is enough."""
    if not any(a.get(schema.ARG_OPTIONS) for a in actions):
        raise NotSettable("a positional argument: parity rewrites options only")
    tokens, removed, at = _remove(command, actions)
    default = actions[0].get(schema.ARG_DEFAULT)
    added = [] if same_value(default, value) else _tokens_for(actions, value)
    at = len(tokens) if at is None else at
    return Edit(tuple(tokens[:at] + added + tokens[at:]), tuple(removed), tuple(added))


def off_value(value: Any) -> Any:
    """The value a setting has when its feature is off (False, 0, 0.0), for a setting only the candidate has;
    NotSettable for types without one (a string, a list: which value is "off" is the trainer's choice)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0
    if isinstance(value, float):
        return 0.0
    raise NotSettable(f"only the candidate has it, and a {type(value).__name__} value has no off value to set it to")
