"""A small reader for the C files that hold certificate definitions and cert info.

It understands what the Signer Module Utility, Microchip's ``cert2certdef.py`` and Espressif's
generator write: global variable definitions with brace initialisers (designated in any order,
positional, nested, trailing commas), byte arrays and strings, enum names, ``NULL``, ``&name``,
``sizeof`` (of variables, ``a[0]`` and types) and integer arithmetic (``35-13``, ``208+93``),
casts, ``//`` and ``/* */`` comments. Preprocessor lines are skipped except that ``#if 0`` /
``#else`` / ``#endif`` blocks are honoured (any other ``#if`` condition counts as true) and
object-like ``#define NAME value`` macros are expanded. Typedefs, prototypes and function bodies
are skipped. Errors carry file, line, column and what was expected.

Sans-IO: ``parse_c_source(text, filename)`` takes text; nothing here opens files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import CSourceError


# ---- tokens -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # "ident" "number" "string" "char" "punct" "eof"
    text: str
    line: int
    col: int
    value: int | str | None = None


_PUNCT = (
    "<<",
    ">>",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    ",",
    ";",
    ".",
    "&",
    "*",
    "/",
    "+",
    "-",
    "%",
    "|",
    "^",
    "~",
    ":",
    "?",
    "<",
    ">",
    "!",
)
_NUM_RE = re.compile(r"(0[xX][0-9a-fA-F]+|0[bB][01]+|[0-9]+)([uUlL]*)")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


class _Lexer:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.pos = 0
        self.line = 1
        self.line_start = 0
        self.cond: list[tuple[bool, bool]] = []  # (this branch active, some branch taken)
        self.macros: dict[str, list[Token]] = {}
        self.function_macros: set[str] = set()

    def error(self, message: str, line: int, col: int, expected: str | None = None) -> CSourceError:
        return CSourceError(
            message, filename=self.filename, line=line, column=col, expected=expected
        )

    @property
    def col(self) -> int:
        return self.pos - self.line_start + 1

    @property
    def active(self) -> bool:
        return all(a for a, _ in self.cond)

    def _newline(self) -> None:
        self.line += 1
        self.line_start = self.pos

    def _skip_space(self) -> bool:
        """Skip blanks and comments; True if at the start of a line (only blanks before)."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\n":
                self.pos += 1
                self._newline()
            elif ch in " \t\r\f\v":
                self.pos += 1
            elif ch == "\\" and text.startswith("\n", self.pos + 1):
                self.pos += 2
                self._newline()
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated /* comment", self.line, self.col, "*/")
                for _ in range(text.count("\n", self.pos, end)):
                    nl = text.find("\n", self.pos)
                    self.pos = nl + 1
                    self._newline()
                self.pos = end + 2
            else:
                return True
        return True

    def _at_line_start(self) -> bool:
        return self.text[self.line_start : self.pos].strip() == ""

    def _directive(self) -> None:
        line, col = self.line, self.col
        start = self.pos + 1
        chunks = []
        pos = start
        while True:
            end = self.text.find("\n", pos)
            end = len(self.text) if end < 0 else end
            piece = self.text[pos:end]
            if piece.endswith("\\"):
                chunks.append(piece[:-1])
                pos = end + 1
                self.pos = pos
                self._newline()
                continue
            chunks.append(piece)
            self.pos = end
            joined = " ".join(chunks)
            if joined.count("/*") > joined.count("*/"):  # a comment running past the line
                close = self.text.find("*/", end)
                if close < 0:
                    raise self.error("unterminated /* comment", line, col, "*/")
                for _ in range(self.text.count("\n", end, close)):
                    nl = self.text.find("\n", self.pos)
                    self.pos = nl + 1
                    self._newline()
                chunks.append(self.text[self.pos : close + 2])
                self.pos = close + 2
                rest_end = self.text.find("\n", self.pos)
                rest_end = len(self.text) if rest_end < 0 else rest_end
                chunks.append(self.text[self.pos : rest_end])
                self.pos = rest_end
            break
        body = re.sub(r"/\*.*?\*/", " ", " ".join(chunks))
        body = body.split("//", 1)[0].strip()
        m = re.match(r"(\w*)\s*(.*)", body)
        word, rest = (m.group(1), m.group(2).strip()) if m else ("", "")
        if word in ("if", "ifdef", "ifndef"):
            cond = not (word == "if" and rest in ("0", "(0)", "false"))
            self.cond.append((cond, cond))
        elif word == "elif":
            if not self.cond:
                raise self.error("#elif without #if", line, col)
            _active, taken = self.cond[-1]
            cond = not taken and rest not in ("0", "(0)", "false")
            self.cond[-1] = (cond, taken or cond)
        elif word == "else":
            if not self.cond:
                raise self.error("#else without #if", line, col)
            _active, taken = self.cond[-1]
            self.cond[-1] = (not taken, True)
        elif word == "endif":
            if not self.cond:
                raise self.error("#endif without #if", line, col)
            self.cond.pop()
        elif word == "define" and self.active:
            m2 = re.match(r"([A-Za-z_]\w*)(\()?\s*(.*)", rest)
            if m2 is None:
                raise self.error("bad #define", line, col, "a macro name")
            name, paren, value = m2.group(1), m2.group(2), m2.group(3)
            if paren:
                self.function_macros.add(name)
            else:
                sub = _Lexer(value, self.filename)
                toks = []
                while True:
                    t = sub.next_raw()
                    if t.kind == "eof":
                        break
                    toks.append(Token(t.kind, t.text, line, col, t.value))
                self.macros[name] = toks
        elif word == "undef":
            self.macros.pop(rest.strip(), None)
        # #include, #pragma, #error... are ignored.

    def next_raw(self) -> Token:
        while True:
            self._skip_space()
            if self.pos >= len(self.text):
                if self.cond:
                    raise self.error("missing #endif at end of file", self.line, self.col, "#endif")
                return Token("eof", "", self.line, self.col)
            if self.text[self.pos] == "#" and self._at_line_start():
                self._directive()
                continue
            tok = self._token()
            if self.active:
                return tok

    def _token(self) -> Token:
        text, line, col = self.text, self.line, self.col
        ch = text[self.pos]
        m = _IDENT_RE.match(text, self.pos)
        if m:
            self.pos = m.end()
            return Token("ident", m.group(0), line, col)
        m = _NUM_RE.match(text, self.pos)
        if m:
            self.pos = m.end()
            digits = m.group(1)
            if digits.lower().startswith("0x"):
                value = int(digits, 16)
            elif digits.lower().startswith("0b"):
                value = int(digits[2:], 2)
            elif len(digits) > 1 and digits.startswith("0"):
                if not set(digits) <= set("01234567"):
                    raise self.error(f"bad octal number {digits!r}", line, col)
                value = int(digits, 8)
            else:
                value = int(digits)
            if self.pos < len(text) and (text[self.pos].isalnum() or text[self.pos] == "_"):
                raise self.error(
                    f"bad number {text[m.start() : self.pos + 1]!r}",
                    line,
                    col,
                    "a decimal, hex or octal integer",
                )
            return Token("number", m.group(0), line, col, value)
        if ch in "\"'":
            return self._quoted(ch, line, col)
        for p in _PUNCT:
            if text.startswith(p, self.pos):
                self.pos += len(p)
                return Token("punct", p, line, col)
        raise self.error(f"unexpected character {ch!r}", line, col)

    def _quoted(self, quote: str, line: int, col: int) -> Token:
        text = self.text
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.error("unterminated literal", line, col, quote)
            ch = text[self.pos]
            if ch == quote:
                self.pos += 1
                break
            if ch == "\\":
                nxt = text[self.pos + 1 : self.pos + 2]
                if nxt == "x":
                    m = re.match(r"[0-9a-fA-F]{1,2}", text[self.pos + 2 :])
                    if not m:
                        raise self.error("bad \\x escape", self.line, self.col)
                    out.append(chr(int(m.group(0), 16)))
                    self.pos += 2 + len(m.group(0))
                    continue
                if nxt not in _ESCAPES:
                    raise self.error(f"unknown escape \\{nxt}", self.line, self.col)
                out.append(_ESCAPES[nxt])
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        value = "".join(out)
        if quote == "'":
            if len(value) != 1:
                raise self.error("character literal must hold one character", line, col)
            return Token("char", text[col - 1 : self.pos], line, col, ord(value))
        return Token("string", value, line, col, value)


# ---- syntax tree ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    line: int
    col: int


@dataclass(frozen=True)
class Num(Node):
    value: int


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Ident(Node):
    name: str


@dataclass(frozen=True)
class AddrOf(Node):
    name: str


@dataclass(frozen=True)
class Index(Node):
    name: str
    index: Node


@dataclass(frozen=True)
class SizeOf(Node):
    target: Node | None  # an expression
    type_name: str | None = None


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class UnOp(Node):
    op: str
    operand: Node


Designator = tuple[str, "str | Node"]  # (".", field) or ("[", index expression)


@dataclass(frozen=True)
class InitList(Node):
    items: tuple[tuple[tuple[Designator, ...], Node], ...]


@dataclass(frozen=True)
class CVar:
    """One global variable definition."""

    name: str
    type_name: str
    array_dims: tuple[Node | None, ...]
    init: Node | None
    line: int
    col: int
    pointer: bool = False


@dataclass
class CFile:
    """The parsed variables of a C file, in file order."""

    filename: str
    variables: dict[str, CVar] = field(default_factory=dict)

    def of_type(self, type_name: str) -> list[CVar]:
        return [v for v in self.variables.values() if v.type_name == type_name]


_QUALIFIERS = {
    "const",
    "static",
    "extern",
    "volatile",
    "register",
    "inline",
    "signed",
    "unsigned",
    "struct",
    "enum",
    "union",
    "SHARED_LIB_EXPORT",
    "ATCA_DLL",
}
_TYPE_WORDS = {
    "uint8_t",
    "int8_t",
    "uint16_t",
    "int16_t",
    "uint32_t",
    "int32_t",
    "char",
    "int",
    "short",
    "long",
    "size_t",
    "bool",
    "unsigned",
    "signed",
    "uint64_t",
}


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.lex = _Lexer(text, filename)
        self.filename = filename
        self.buf: list[Token] = []
        self.pending: list[Token] = []

    # token stream with macro expansion
    def _fetch(self) -> Token:
        tok = self.pending.pop(0) if self.pending else self.lex.next_raw()
        return self._expand(tok, 0)

    def _expand(self, tok: Token, depth: int) -> Token:
        if tok.kind != "ident":
            return tok
        if tok.text in self.lex.function_macros:
            raise self.error(f"function-like macro {tok.text!r} is not supported", tok)
        if tok.text not in self.lex.macros:
            return tok
        if depth > 32:
            raise self.error(f"macro {tok.text!r} expands without end", tok)
        body = [
            Token(t.kind, t.text, tok.line, tok.col, t.value) for t in self.lex.macros[tok.text]
        ]
        if not body:
            nxt = self.pending.pop(0) if self.pending else self.lex.next_raw()
            return self._expand(nxt, depth + 1)
        self.pending[0:0] = body[1:]
        return self._expand(body[0], depth + 1)

    def peek(self, ahead: int = 0) -> Token:
        while len(self.buf) <= ahead:
            self.buf.append(self._fetch())
        return self.buf[ahead]

    def next(self) -> Token:
        tok = self.peek()
        self.buf.pop(0)
        return tok

    def error(self, message: str, tok: Token, expected: str | None = None) -> CSourceError:
        return CSourceError(
            message, filename=self.filename, line=tok.line, column=tok.col, expected=expected
        )

    def expect(self, text: str, what: str | None = None) -> Token:
        tok = self.next()
        if tok.text != text or tok.kind not in ("punct", "ident"):
            shown = tok.text if tok.kind != "eof" else "end of file"
            raise self.error(f"found {shown!r}", tok, what or repr(text))
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind == "punct" and tok.text == text:
            self.next()
            return True
        return False

    # top level
    def parse_file(self) -> CFile:
        out = CFile(self.filename)
        while True:
            tok = self.peek()
            if tok.kind == "eof":
                return out
            if tok.kind == "punct" and tok.text in (";", "}"):
                self.next()
                continue
            if tok.kind == "ident" and tok.text == "typedef":
                self._skip_statement()
                continue
            if tok.kind == "ident" and tok.text == "extern" and self.peek(1).kind == "string":
                self.next()
                self.next()
                self.accept("{")
                continue
            var = self._declaration()
            if var is not None:
                if (
                    var.name in out.variables
                    and out.variables[var.name].init is not None
                    and var.init is not None
                ):
                    raise CSourceError(
                        f"{var.name!r} defined twice",
                        filename=self.filename,
                        line=var.line,
                        column=var.col,
                    )
                if var.init is not None or var.name not in out.variables:
                    out.variables[var.name] = var

    def _skip_statement(self) -> None:
        depth = 0
        while True:
            tok = self.next()
            if tok.kind == "eof":
                raise self.error("unexpected end of file", tok, "';'")
            if tok.text in ("{", "(", "["):
                depth += 1
            elif tok.text in ("}", ")", "]"):
                depth -= 1
            elif tok.text == ";" and depth == 0:
                return

    def _skip_balanced(self, open_: str, close: str) -> None:
        depth = 0
        while True:
            tok = self.next()
            if tok.kind == "eof":
                raise self.error("unexpected end of file", tok, repr(close))
            if tok.text == open_:
                depth += 1
            elif tok.text == close:
                depth -= 1
                if depth == 0:
                    return

    def _declaration(self) -> CVar | None:
        words: list[Token] = []
        pointer = False
        while True:
            tok = self.peek()
            if tok.kind == "ident":
                words.append(self.next())
            elif tok.kind == "punct" and tok.text == "*":
                pointer = True
                self.next()
            else:
                break
        if len(words) < 2:
            tok = self.peek()
            shown = tok.text if tok.kind != "eof" else "end of file"
            raise self.error(
                f"found {shown!r}", tok, "a declaration such as 'const uint8_t name[] = {...};'"
            )
        name_tok = words[-1]
        type_words = [
            w.text
            for w in words[:-1]
            if w.text not in _QUALIFIERS or w.text in ("signed", "unsigned")
        ]
        type_name = type_words[-1] if type_words else "int"
        if self.peek().text == "(":  # function prototype or definition
            self._skip_balanced("(", ")")
            if self.peek().text == "{":
                self._skip_balanced("{", "}")
            else:
                self.expect(";")
            return None
        dims: list[Node | None] = []
        while self.accept("["):
            if self.accept("]"):
                dims.append(None)
            else:
                dims.append(self.expr())
                self.expect("]", "']'")
        init = None
        if self.accept("="):
            init = self.initializer()
        end = self.next()
        if end.text == ",":
            raise self.error("several declarators in one statement are not supported", end, "';'")
        if end.text != ";":
            shown = end.text if end.kind != "eof" else "end of file"
            raise self.error(
                f"found {shown!r} after the definition of {name_tok.text!r}", end, "';'"
            )
        return CVar(
            name_tok.text, type_name, tuple(dims), init, name_tok.line, name_tok.col, pointer
        )

    # initialisers
    def initializer(self) -> Node:
        tok = self.peek()
        if tok.text == "{" and tok.kind == "punct":
            self.next()
            items: list[tuple[tuple[Designator, ...], Node]] = []
            while not self.accept("}"):
                desig: list[Designator] = []
                while True:
                    t = self.peek()
                    if t.kind == "punct" and t.text == ".":
                        self.next()
                        name = self.next()
                        if name.kind != "ident":
                            raise self.error(f"found {name.text!r}", name, "a field name")
                        desig.append((".", name.text))
                    elif t.kind == "punct" and t.text == "[":
                        self.next()
                        desig.append(("[", self.expr()))
                        self.expect("]", "']'")
                    else:
                        break
                if desig:
                    self.expect("=", "'=' after a designator")
                items.append((tuple(desig), self.initializer()))
                if not self.accept(","):
                    nxt = self.peek()
                    if not (nxt.kind == "punct" and nxt.text == "}"):
                        shown = nxt.text if nxt.kind != "eof" else "end of file"
                        raise self.error(f"found {shown!r}", nxt, "',' or '}'")
            return InitList(tok.line, tok.col, tuple(items))
        return self.expr()

    # expressions
    def expr(self) -> Node:
        return self._binary(0)

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("|",),
        ("^",),
        ("&",),
        ("<<", ">>"),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def _binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while True:
            tok = self.peek()
            if tok.kind == "punct" and tok.text in self._LEVELS[level]:
                self.next()
                right = self._binary(level + 1)
                left = BinOp(tok.line, tok.col, tok.text, left, right)
            else:
                return left

    def _is_type_start(self, ahead: int) -> bool:
        """A parenthesised type name starts at ``ahead`` (words and '*' up to ')')."""
        tok = self.peek(ahead)
        if not (
            tok.kind == "ident"
            and (tok.text in _TYPE_WORDS or tok.text in _QUALIFIERS or tok.text.endswith("_t"))
        ):
            return False
        i = ahead + 1
        while i < ahead + 8:
            nxt = self.peek(i)
            if nxt.kind == "ident" or (nxt.kind == "punct" and nxt.text == "*"):
                i += 1
                continue
            return nxt.kind == "punct" and nxt.text == ")"
        return False

    def _type_name(self) -> str:
        words = []
        while self.peek().kind == "ident" or self.peek().text == "*":
            words.append(self.next().text)
        return " ".join(w for w in words if w not in ("const", "volatile", "struct"))

    def _unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "punct" and tok.text in ("-", "+", "~"):
            self.next()
            return UnOp(tok.line, tok.col, tok.text, self._unary())
        if tok.kind == "punct" and tok.text == "&":
            self.next()
            target = self._unary()
            if isinstance(target, Ident):
                return AddrOf(tok.line, tok.col, target.name)
            if isinstance(target, Index):
                return AddrOf(tok.line, tok.col, target.name)
            raise self.error("'&' of something other than a variable", tok, "a variable name")
        if tok.kind == "ident" and tok.text == "sizeof":
            self.next()
            if self.peek().text == "(" and self._is_type_start(1):
                self.next()
                type_name = self._type_name()
                self.expect(")", "')'")
                return SizeOf(tok.line, tok.col, None, type_name)
            return SizeOf(tok.line, tok.col, self._unary())
        if tok.kind == "punct" and tok.text == "(":
            if self._is_type_start(1):
                self.next()
                self._type_name()
                self.expect(")", "')' closing a cast")
                return self._unary()
            self.next()
            inner = self.expr()
            self.expect(")", "')'")
            return inner
        return self._primary()

    def _primary(self) -> Node:
        tok = self.next()
        if tok.kind in ("number", "char"):
            assert isinstance(tok.value, int)
            return Num(tok.line, tok.col, tok.value)
        if tok.kind == "string":
            value = str(tok.value)
            while self.peek().kind == "string":
                value += str(self.next().value)
            return Str(tok.line, tok.col, value)
        if tok.kind == "ident":
            if self.accept("["):
                index = self.expr()
                self.expect("]", "']'")
                return Index(tok.line, tok.col, tok.text, index)
            return Ident(tok.line, tok.col, tok.text)
        shown = tok.text if tok.kind != "eof" else "end of file"
        raise self.error(f"found {shown!r}", tok, "a value (number, string, name, '{')")


def parse_c_source(text: str, filename: str = "<string>") -> CFile:
    """Parse the global variable definitions of a C file (see the module docstring)."""
    return _Parser(text, filename).parse_file()


# ---- evaluation -------------------------------------------------------------------------------
_BASIC_SIZES = {
    "uint8_t": 1,
    "int8_t": 1,
    "char": 1,
    "unsigned char": 1,
    "signed char": 1,
    "bool": 1,
    "uint16_t": 2,
    "int16_t": 2,
    "short": 2,
    "uint32_t": 4,
    "int32_t": 4,
    "int": 4,
    "unsigned": 4,
    "unsigned int": 4,
    "long": 8,
    "size_t": 8,
    "uint64_t": 8,
    # atcacert structures (packed, 2016 layout); only ratios matter in practice
    "atcacert_device_loc_t": 7,
    "atcacert_cert_loc_t": 4,
    "atcacert_cert_element_t": 27,
}


class Evaluator:
    """Integer evaluation of expressions against the file's variables and known enum names."""

    def __init__(self, cfile: CFile, constants: Mapping[str, int]) -> None:
        self.cfile = cfile
        self.constants = dict(constants)

    def error(self, message: str, node: Node | CVar, expected: str | None = None) -> CSourceError:
        return CSourceError(
            message,
            filename=self.cfile.filename,
            line=node.line,
            column=node.col,
            expected=expected,
        )

    def variable(self, name: str, node: Node) -> CVar:
        var = self.cfile.variables.get(name)
        if var is None:
            raise self.error(f"unknown name {name!r}", node, "a variable defined in this file")
        return var

    def array_length(self, var: CVar) -> int:
        if not var.array_dims:
            raise self.error(f"{var.name!r} is not an array", var)
        dim = var.array_dims[0]
        if dim is not None:
            return self.integer(dim)
        if isinstance(var.init, InitList):
            return len(var.init.items)
        if isinstance(var.init, Str):
            return len(var.init.value.encode("latin-1")) + 1
        raise self.error(f"size of {var.name!r} unknown", var)

    def type_size(self, type_name: str, node: Node) -> int:
        if type_name.endswith("*"):
            return 8
        size = _BASIC_SIZES.get(type_name)
        if size is None:
            size = 1  # unknown structure: sizeof(a)/sizeof(a[0]) still gives the count
        return size

    def sizeof(self, node: SizeOf) -> int:
        if node.type_name is not None:
            if node.type_name in self.cfile.variables:  # a variable named like a type (x_t)
                return self.sizeof(
                    SizeOf(node.line, node.col, Ident(node.line, node.col, node.type_name))
                )
            return self.type_size(node.type_name, node)
        target = node.target
        if isinstance(target, Ident):
            var = self.variable(target.name, target)
            elem = 8 if var.pointer else self.type_size(var.type_name, target)
            if var.array_dims:
                return self.array_length(var) * elem
            return elem
        if isinstance(target, Index):
            var = self.variable(target.name, target)
            return self.type_size(var.type_name, target)
        raise self.error("unsupported sizeof operand", node, "sizeof(name) or sizeof(name[0])")

    def integer(self, node: Node) -> int:
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Ident):
            if node.name in self.constants:
                return self.constants[node.name]
            raise self.error(f"unknown name {node.name!r}", node, "a number or an enum name")
        if isinstance(node, SizeOf):
            return self.sizeof(node)
        if isinstance(node, UnOp):
            value = self.integer(node.operand)
            return {"-": -value, "+": value, "~": ~value}[node.op]
        if isinstance(node, BinOp):
            a, b = self.integer(node.left), self.integer(node.right)
            if node.op in ("/", "%") and b == 0:
                raise self.error("division by zero", node)
            ops = {
                "+": a + b,
                "-": a - b,
                "*": a * b,
                "|": a | b,
                "&": a & b,
                "^": a ^ b,
                "<<": a << b if 0 <= b < 64 else 0,
                ">>": a >> b if 0 <= b < 64 else 0,
            }
            if node.op == "/":
                return int(a / b)
            if node.op == "%":
                return a - int(a / b) * b
            return ops[node.op]
        raise self.error("not an integer expression", node, "an integer")

    def bytes_of(self, var: CVar) -> bytes:
        """Contents of a byte array (brace list of 0-255 values, or a string)."""
        init = var.init
        if isinstance(init, Str):
            return init.value.encode("latin-1")
        if not isinstance(init, InitList):
            raise self.error(f"{var.name!r} has no byte-array initialiser", var, "'{ 0x30, ... }'")
        out = bytearray()
        for desig, item in init.items:
            if desig:
                raise self.error("designators inside a byte array are not supported", item)
            value = self.integer(item)
            if not 0 <= value <= 255:
                raise self.error(f"{value} is not a byte", item, "a value 0-255")
            out.append(value)
        if var.array_dims and var.array_dims[0] is not None:
            size = self.integer(var.array_dims[0])
            if size < len(out):
                raise self.error(f"{len(out)} initialisers for {var.name}[{size}]", var)
            out += bytes(size - len(out))
        return bytes(out)
