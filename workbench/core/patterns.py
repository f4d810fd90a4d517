"""``re.fullmatch`` for patterns from files, in linear time: no backtracking to exploit.

PEFT's ``target_modules`` may be a regular expression that must match a module's whole name
(``re.fullmatch``, peft ``tuners/tuners_utils.py``). Python's backtracking engine takes
exponential time on patterns such as ``(([a-z._0-9])+)+!`` (hours on one GPT-2 module name), so a
pattern read from a file is never handed to ``re``. Python's own parser reads it (so the syntax is
exactly ``re``'s); the parse is compiled into a nondeterministic automaton and the name is run
through all of its states at once (Thompson 1968, "Regular expression search algorithm"; Cox 2007,
"Regular Expression Matching Can Be Simple And Fast"). The work is (states) x (name length),
whatever the pattern's nesting; counted repeats are unrolled, so the states are capped.

Greedy or lazy repeats do not change *whether* a full match exists, so both are supported.
What an automaton cannot decide, or what changes what ``re`` would match, is refused with
``PatternError``: back-references, look-arounds, atomic groups and possessive repeats,
case-insensitive or multi-line flags, patterns longer than ``limits.MAX_PATTERN_CHARS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from .limits import MAX_PATTERN_CHARS

try:  # Python 3.11+
    from re import _constants as sre
    from re import _parser as sre_parse
except ImportError:  # Python 3.10 (the modules 3.11 deprecated)
    import sre_constants as sre  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

MAX_NESTING = 50  # groups inside groups; the recursion below stays far from Python's limit
MAX_STATES = 20_000  # automaton states, after unrolling counted repeats such as a{2,500}
# Flags that change only how the pattern is read or what \w and \d mean; others are refused.
_ALLOWED_FLAGS = sre.SRE_FLAG_UNICODE | sre.SRE_FLAG_ASCII | sre.SRE_FLAG_VERBOSE | sre.SRE_FLAG_DOTALL
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
_UNSUPPORTED = {
    sre.GROUPREF: "back-references",
    sre.GROUPREF_EXISTS: "conditional groups",
    sre.ASSERT: "look-arounds",
    sre.ASSERT_NOT: "look-arounds",
}
for _name, _words in (("ATOMIC_GROUP", "atomic groups"), ("POSSESSIVE_REPEAT", "possessive repeats")):
    if hasattr(sre, _name):  # Python 3.11+
        _UNSUPPORTED[getattr(sre, _name)] = _words


class PatternError(ValueError):
    """A pattern this module will not match (too long, or a feature it cannot decide safely)."""


def fullmatch(pattern: str, text: str) -> bool:
    """Whether ``re.fullmatch(pattern, text)`` would match, decided without backtracking.

    Raises ``re.error`` for a malformed pattern and ``PatternError`` for one refused here.
    """
    automaton = _compiled(pattern)
    states = automaton.closure({automaton.start}, text, 0)
    for i, ch in enumerate(text):
        moved = {state.next for state in states if state.kind == "char" and automaton.accepts(state, ch)}
        if not moved:
            return False
        states = automaton.closure(moved, text, i + 1)
    return automaton.final in states


def check_pattern(pattern: str) -> None:
    """Raise ``re.error`` or ``PatternError`` now rather than at the first match."""
    _compiled(pattern)


@dataclass(eq=False)
class _State:
    """One automaton state: ``char`` reads a character that ``test`` accepts; ``split`` goes on to
    every state in ``outs`` without reading; ``at`` goes on when the anchor ``test`` holds here."""

    kind: str  # "char", "split", "at" or "final"
    test: object = None  # "char": (op, argument) of the parse; "at": the anchor code
    next: _State | None = None
    outs: list[_State] = field(default_factory=list)


class _Automaton:
    def __init__(self, flags: int):
        self.ascii = bool(flags & sre.SRE_FLAG_ASCII)
        self.dotall = bool(flags & sre.SRE_FLAG_DOTALL)
        self.count = 0
        self.final = self.state("final")
        self.start = self.final
        self._accepted: dict[tuple[int, str], bool] = {}

    def state(self, kind: str, **values) -> _State:
        self.count += 1
        if self.count > MAX_STATES:
            raise PatternError(f"the pattern's repeats unroll to more than {MAX_STATES:,} states")
        return _State(kind, **values)

    # --- building, back to front: each part is compiled to run into the states after it

    def compile(self, parts, after: _State) -> _State:
        for part in reversed(list(parts)):
            after = self.compile_part(part, after)
        return after

    def compile_part(self, part, after: _State) -> _State:
        op, av = part
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            return self.state("char", test=part, next=after)
        if op is sre.AT:
            return self.state("at", test=av, next=after)
        if op is sre.SUBPATTERN:
            return self.compile(av[3], after)
        if op is sre.BRANCH:
            return self.state("split", outs=[self.compile(alternative, after) for alternative in av[1]])
        low, high, sub = av  # MAX_REPEAT / MIN_REPEAT
        if high == sre.MAXREPEAT:
            loop = self.state("split")
            loop.outs = [self.compile(sub, loop), after]  # any number more, then on
            after = loop
        else:
            for _ in range(high - low):
                after = self.state("split", outs=[self.compile(sub, after), after])  # one more, or on
        for _ in range(low):
            after = self.compile(sub, after)
        return after

    # --- running

    def closure(self, states: set[_State], text: str, i: int) -> set[_State]:
        """``states`` and all reached from them without reading a character, at position ``i``."""
        seen: set[_State] = set()
        stack = list(states)
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            if state.kind == "split":
                stack.extend(state.outs)
            elif state.kind == "at" and self._at(state.test, text, i):
                stack.append(state.next)
        return seen

    def accepts(self, state: _State, ch: str) -> bool:
        key = (id(state), ch)
        if key not in self._accepted:
            self._accepted[key] = self._reads(state.test, ch)
        return self._accepted[key]

    def _reads(self, part, ch: str) -> bool:
        op, av = part
        if op is sre.LITERAL:
            return ord(ch) == av
        if op is sre.NOT_LITERAL:
            return ord(ch) != av
        if op is sre.ANY:
            return self.dotall or ch != "\n"
        return self._in_set(av, ch)

    def _in_set(self, items, ch: str) -> bool:
        negate = False
        found = False
        code = ord(ch)
        for op, av in items:
            if op is sre.NEGATE:
                negate = True
            elif op is sre.LITERAL:
                found |= code == av
            elif op is sre.RANGE:
                found |= av[0] <= code <= av[1]
            elif op is sre.CATEGORY:
                found |= self._category(av, ch)
            else:
                raise PatternError(f"the character class uses {op}, which is not supported")
        return found != negate

    def _category(self, category, ch: str) -> bool:
        if self.ascii and not ch.isascii():
            return category in (sre.CATEGORY_NOT_DIGIT, sre.CATEGORY_NOT_SPACE, sre.CATEGORY_NOT_WORD)
        tests = {
            sre.CATEGORY_DIGIT: ch.isdecimal(),
            sre.CATEGORY_NOT_DIGIT: not ch.isdecimal(),
            sre.CATEGORY_SPACE: ch.isspace(),
            sre.CATEGORY_NOT_SPACE: not ch.isspace(),
            sre.CATEGORY_WORD: _is_word(ch),
            sre.CATEGORY_NOT_WORD: not _is_word(ch),
        }
        if category not in tests:
            raise PatternError(f"the character class {category} is not supported")
        return tests[category]

    def _at(self, where, text: str, i: int) -> bool:
        if where in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
            return i == 0
        if where is sre.AT_END:  # $ also matches before a final newline
            return i == len(text) or (i == len(text) - 1 and text[-1] == "\n")
        if where is sre.AT_END_STRING:
            return i == len(text)
        if where in (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY):
            before = i > 0 and self._word(text[i - 1])
            after = i < len(text) and self._word(text[i])
            return (before != after) == (where is sre.AT_BOUNDARY)
        raise PatternError(f"the anchor {where} is not supported")

    def _word(self, ch: str) -> bool:
        return _is_word(ch) and (ch.isascii() or not self.ascii)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> _Automaton:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"the pattern is {len(pattern):,} characters long; at most {MAX_PATTERN_CHARS} are read")
    try:
        tree = sre_parse.parse(pattern)
    except RecursionError:
        raise PatternError("the pattern nests too deeply") from None
    flags = tree.state.flags
    if flags & ~_ALLOWED_FLAGS:
        raise PatternError("case-insensitive, multi-line and locale flags are not supported")
    _check_parts(tree, depth=0)
    automaton = _Automaton(flags)
    automaton.start = automaton.compile(tree, automaton.final)
    return automaton


def _check_parts(parts, depth: int) -> None:
    if depth > MAX_NESTING:
        raise PatternError(f"the pattern nests groups more than {MAX_NESTING} deep")
    for op, av in parts:
        if op in _UNSUPPORTED:
            raise PatternError(f"{_UNSUPPORTED[op]} are not supported")
        if op is sre.SUBPATTERN:
            _, add_flags, del_flags, sub = av
            if add_flags or del_flags:
                raise PatternError("flags inside the pattern, as (?i:…), are not supported")
            _check_parts(sub, depth + 1)
        elif op in _REPEATS:
            _check_parts(av[2], depth + 1)
        elif op is sre.BRANCH:
            for alternative in av[1]:
                _check_parts(alternative, depth + 1)
        elif op not in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN, sre.AT):
            raise PatternError(f"the pattern uses {op}, which is not supported")


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"
