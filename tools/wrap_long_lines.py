"""Wrap notebook code lines longer than the limit (120) without changing what the code means.

Lines over the limit in the code cells of the given notebooks (default: every notebook under nbs/)
are rewritten by these moves, tried in order until the line fits:

1. a trailing comment moves to its own line(s) above the code, at the same indentation;
2. inside brackets, the line breaks after a comma (or before `for`, `if`, `else`, `and`, `or`), the rest
   aligned one column right of the innermost open bracket (4 spaces in from the line when that is far right);
3. a one-line string literal splits at a space into two adjacent literals (same prefix; never inside an
   f-string's `{...}`), in parentheses when it is not inside brackets already (a docstring stays one string);
4. `if x: body` (any compound statement on one line) puts its body on the next line;
5. `a; b` becomes two lines;
6. as 2, in any bracket of the line.

Before that, a message that an earlier wrap split mid-phrase is flowed again: adjacent one-line string literals
(plain or f-strings without backslashes, each continuation on its own line) with a short piece (< 30 characters)
that is not the last are joined and re-split greedily at spaces, so that every line but the last is as full as the
limit allows.

A rewritten cell must parse to the same syntax tree as before (comments aside); otherwise the cell is left as
it was. Cells with IPython magics are skipped. What could not be wrapped is listed, so a person can do it.
Run `nbdev_export` afterwards (the modules are generated from the notebooks).

    python tools/wrap_long_lines.py [--check] [notebook ...]
"""
import argparse
import ast
import io
import json
import sys
import textwrap
import tokenize
from pathlib import Path

LIMIT = 120
ROOT = Path(__file__).resolve().parents[1]
_BREAK_BEFORE = {"for": 1, "if": 2, "else": 2, "and": 3, "or": 3}   # preferred after a comma (0), in this order


def _tokens(src):
    return list(tokenize.generate_tokens(io.StringIO(src).readline))


def _same_tree(a: str, b: str) -> bool:
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:
        return False


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _move_comment(lines, r, toks):
    "Move 1: the trailing comment of line r (0-based) goes above it."
    line = lines[r]
    com = [t for t in toks if t.type == tokenize.COMMENT and t.start[0] == r + 1]
    if not com or not line[:com[0].start[1]].strip(): return None
    c = com[0]
    if "noqa" in c.string or c.string.startswith("# type:"): return None
    if r > 0 and lines[r - 1].rstrip().endswith("\\"): return None
    ind = _indent(line)
    text = c.string.lstrip("#").strip()
    above = textwrap.wrap(text, LIMIT, initial_indent=ind + "# ", subsequent_indent=ind + "# ",
                          break_long_words=False, break_on_hyphens=False) or [ind + "#"]
    return lines[:r] + above + [line[:c.start[1]].rstrip()] + lines[r + 1:]


def _brackets(toks):
    "Open-bracket token index → position where its bracket closes."
    stack, close = [], {}
    for i, t in enumerate(toks):
        if t.type == tokenize.OP and t.string in "([{": stack.append(i)
        elif t.type == tokenize.OP and t.string in ")]}" and stack: close[stack.pop()] = t.start
    return close


def _open_brackets(toks, upto):
    "Indices of the bracket tokens still open at position `upto` (row, col), outermost first."
    stack = []
    for i, t in enumerate(toks):
        if t.start >= upto: break
        if t.type == tokenize.OP and t.string in "([{": stack.append(i)
        elif t.type == tokenize.OP and t.string in ")]}" and stack: stack.pop()
    return stack


def _continuation(line, b, toks):
    "Indentation of a continuation inside the open bracket `toks[b]`: aligned with what follows it."
    after = next((t for t in toks[b + 1:] if t.type not in (tokenize.NL, tokenize.COMMENT)), None)
    col = after.start[1] if after is not None and after.start[0] != toks[b].start[0] else toks[b].end[1]
    return " " * (col if col <= 80 else len(_indent(line)) + 8)


def _in_for_target(toks, i, b):
    "Is the comma `toks[i]` between a `for` and its `in`, inside bracket `toks[b]`?"
    depth = 0
    for t in reversed(toks[b + 1:i]):
        if t.type == tokenize.OP and t.string in ")]}": depth += 1
        elif t.type == tokenize.OP and t.string in "([{": depth -= 1
        elif depth == 0 and t.type == tokenize.NAME and t.string in ("for", "in"): return t.string == "for"
    return False


def _break_in_brackets(lines, r, toks, strict=True):
    "Move 2: break line r inside the outermost bracket that runs past the limit, after a comma (else before a keyword)."
    line, close, cands = lines[r], _brackets(toks), []
    for i, t in enumerate(toks):
        if t.start[0] != r + 1: continue
        if t.type == tokenize.OP and t.string == ",":
            cut, kind = t.end[1], 0
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is None or nxt.start[0] != r + 1: continue
            if nxt.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE): continue
        elif t.type == tokenize.NAME and t.string in _BREAK_BEFORE and t.start[1] > 0:
            cut, kind = t.start[1], _BREAK_BEFORE[t.string]
        else:
            continue
        head, rest = line[:cut].rstrip(), line[cut:].strip()
        if len(head) > LIMIT or not head.strip() or len(rest) < 12 or rest.startswith("#"): continue
        stack = _open_brackets(toks, (r + 1, cut))
        if not stack or (strict and close.get(stack[-1], (r + 2, 0)) <= (r + 1, LIMIT)): continue   # past the limit
        if kind == 0 and _in_for_target(toks, i, stack[-1]): continue
        cands.append((len(stack), kind, -cut, cut, stack[-1]))
    if not cands: return None
    *_, cut, b = min(cands)
    return lines[:r] + [line[:cut].rstrip(), _continuation(line, b, toks) + line[cut:].strip()] + lines[r + 1:]


def _split_string(lines, r, toks):
    "Move 3: split a one-line string literal of line r at a space so that the line's first part fits."
    line = lines[r]
    strings = [t for t in toks if t.type == tokenize.STRING and t.start[0] == r + 1 == t.end[0] and t.start[1] < LIMIT]
    for t in reversed(strings):
        s = t.string
        q = next(i for i, ch in enumerate(s) if ch in "'\"")
        prefix, quote = s[:q], s[q]
        if s[q:q + 3] in ('"""', "'''") or "b" in prefix.lower(): continue
        body = s[q + 1:-1]
        depth, cands, i = 0, [], 0
        while i < len(body):
            ch = body[i]
            if "f" in prefix.lower() and ch in "{}":
                if body[i:i + 2] in ("{{", "}}"): i += 2; continue
                depth += 1 if ch == "{" else -1
            elif ch == "\\": i += 2; continue
            elif ch == " " and depth == 0: cands.append(i)
            i += 1
        start = t.start[1]
        fits = [c for c in cands if start + len(prefix) + 1 + c + 2 <= LIMIT and c > 0]
        if not fits: continue
        c = ([c for c in fits if len(body) - c - 1 >= 15] or fits)[-1]   # not a stub left on the next line
        first, second = f"{prefix}{quote}{body[:c + 1]}{quote}", f"{prefix}{quote}{body[c + 1:]}{quote}"
        if stack := _open_brackets(toks, t.start):
            ind = " " * start if start <= 80 else _continuation(line, stack[-1], toks)
            return lines[:r] + [line[:start] + first, ind + second + line[t.end[1]:]] + lines[r + 1:]
        wrapped = [line[:start] + "(" + first, " " * (start + 1) + second + ")" + line[t.end[1]:]]
        return lines[:r] + wrapped + lines[r + 1:]
    return None


def _depth0(toks, r):
    "Tokens of line r (0-based) outside any bracket."
    depth, out = 0, []
    for t in toks:
        if t.start[0] > r + 1: break
        if t.type == tokenize.OP and t.string in ")]}": depth -= 1
        if t.start[0] == r + 1 and depth == 0: out.append(t)
        if t.type == tokenize.OP and t.string in "([{": depth += 1
    return out


_COMPOUND = ("if", "elif", "else", "for", "while", "with", "try", "except", "finally", "def", "class")


def _unfold_compound(lines, r, toks):
    "Move 4: `if x: body` on one line becomes `if x:` and the body on its own line, 4 spaces in."
    line, top = lines[r], _depth0(toks, r)
    if not top or top[0].type != tokenize.NAME or top[0].string not in _COMPOUND: return None
    colon = next((t for t in top if t.type == tokenize.OP and t.string == ":"), None)
    if colon is None or not line[colon.end[1]:].strip() or line[colon.end[1]:].strip().startswith("#"): return None
    return lines[:r] + [line[:colon.end[1]], _indent(line) + "    " + line[colon.end[1]:].strip()] + lines[r + 1:]


def _split_semicolons(lines, r, toks):
    "Move 5: `a; b` becomes two lines at the same indentation."
    line, top = lines[r], _depth0(toks, r)
    if top and top[0].type == tokenize.NAME and top[0].string in _COMPOUND: return None
    semis = [t for t in top if t.type == tokenize.OP and t.string == ";"]
    if not semis: return None
    parts, last = [], 0
    for t in semis:
        parts.append(line[last:t.start[1]].strip()); last = t.end[1]
    parts.append(line[last:].strip())
    if not all(parts): return None
    return lines[:r] + [_indent(line) + p for p in parts] + lines[r + 1:]


SHORT = 30


def _literal(tok):
    "(prefix, quote, body) of a one-line single- or double-quoted string token, or None."
    t = tok.string
    pre = t[:len(t) - len(t.lstrip("rRbBfFuU"))]
    q = t[len(pre):]
    if pre.lower() not in ("", "f") or len(q) < 2 or q[0] not in "\"'" or q[:3] in ('"""', "'''") or q[-1] != q[0]:
        return None
    return pre, q[0], q[1:-1]


def _pieces(body: str, first: int, rest: int, fstring: bool) -> list[str]:
    "Split `body` (no backslashes) after spaces into pieces of at most `first`, then `rest` characters (not in `{}`)."
    cuts, depth, i = [], 0, 0
    while i < len(body):
        c = body[i]
        if fstring and body[i:i + 2] in ("{{", "}}"): i += 2; continue
        if fstring and c == "{": depth += 1
        elif fstring and c == "}": depth -= 1
        elif c == " " and depth == 0: cuts.append(i + 1)
        i += 1
    out, start = [], 0
    while len(body) - start > (first if not out else rest):
        room = first if not out else rest
        fits = [c for c in cuts if start < c <= start + room]
        if not fits: break
        out.append(body[start:fits[-1]]); start = fits[-1]
    return out + [body[start:]]


def rejoin_strings(src: str) -> str:
    "Flow again the implicitly concatenated one-line literals of `src` that hold a short piece before their last."
    lines = src.split("\n")
    toks = _tokens(src)
    runs, i = [], 0
    while i < len(toks):
        j = i
        while (j + 1 < len(toks) and toks[j].type == tokenize.STRING and toks[j + 1].type == tokenize.NL) or \
                (j + 1 < len(toks) and toks[j].type == tokenize.NL and toks[j + 1].type == tokenize.STRING):
            j += 1
        run = [t for t in toks[i:j + 1] if t.type == tokenize.STRING]
        if len(run) >= 2 and toks[i].type == tokenize.STRING: runs.append(run)
        i = j + 1
    for run in reversed(runs):
        lits = [_literal(t) for t in run]
        if any(l is None for l in lits) or len({l[1] for l in lits}) != 1: continue
        if any(l[0] and l[0] != "f" for l in lits) or any("\\" in l[2] for l in lits): continue
        fstr = any(l[0] == "f" for l in lits)
        if fstr:   # a plain piece joins an f-string with its braces doubled: the same string
            lits = [(l[0], l[1], l[2] if l[0] else l[2].replace("{", "{{").replace("}", "}}")) for l in lits]
        if any(t.start[0] != t.end[0] for t in run): continue
        if any(lines[t.start[0] - 1][:t.start[1]].strip() for t in run[1:]): continue   # continuations start lines
        if not any(len(l[2]) < SHORT for l in lits[:-1]): continue
        pre, q = ("f" if fstr else ""), lits[0][1]
        col, tail = run[1].start[1], lines[run[-1].end[0] - 1][run[-1].end[1]:]
        first_room = LIMIT - run[0].start[1] - len(pre) - 2
        rest_room = LIMIT - col - len(pre) - 2
        body = "".join(l[2] for l in lits)
        parts = _pieces(body, first_room, rest_room, fstr)
        if len(parts) >= len(run): continue
        if len(parts[-1]) + len(tail) + col + len(pre) + 2 > LIMIT and len(parts) > 1: continue
        head = lines[run[0].start[0] - 1][:run[0].start[1]]
        def lit(p):      # a piece without a replacement field is written as a plain literal
            field = "{" in p.replace("{{", "").replace("}}", "")
            return (pre + q + p + q) if field or not fstr else q + p.replace("{{", "{").replace("}}", "}") + q
        new = [head + lit(parts[0])] + [" " * col + lit(p) for p in parts[1:]]
        new[-1] += tail
        cand = lines[:run[0].start[0] - 1] + new + lines[run[-1].end[0]:]
        if _same_tree(src, "\n".join(cand)) and all(len(l) <= LIMIT for l in new): lines = cand
    return "\n".join(lines)


def wrap_cell(src: str) -> tuple[str, list[str]]:
    "The cell with its long lines wrapped, and the long lines that are left."
    if any(l.lstrip().startswith(("%", "!")) for l in src.split("\n")) or not _same_tree(src, src): return src, []
    src = rejoin_strings(src)      # same syntax tree: the moves below are checked against it
    lines, stuck = src.split("\n"), set()
    for _ in range(400):
        todo = [r for r, l in enumerate(lines) if len(l) > LIMIT and l not in stuck]
        if not todo: break
        r = todo[0]
        toks = _tokens("\n".join(lines))
        relaxed = lambda ls, i, ts: _break_in_brackets(ls, i, ts, strict=False)
        for move in (_move_comment, _break_in_brackets, _split_string, _unfold_compound, _split_semicolons, relaxed):
            new = move(lines, r, toks)
            if new is not None and _same_tree(src, "\n".join(new)):
                lines = new
                break
        else:
            stuck.add(lines[r])
    return "\n".join(lines), [l for l in lines if len(l) > LIMIT]


def wrap_notebook(path: Path, check: bool = False) -> tuple[int, list[str]]:
    "Wrap every code cell of `path` (unless `check`); returns (cells changed, lines left over the limit)."
    nb, changed, left = json.loads(path.read_text()), 0, []
    for c in nb["cells"]:
        if c["cell_type"] != "code": continue
        src = "".join(c["source"])
        new, rest = wrap_cell(src)
        left += rest
        if new != src:
            changed += 1
            c["source"] = new.splitlines(keepends=True)
    if changed and not check:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed, left


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a cell would change")
    a = ap.parse_args(argv)
    paths = a.notebooks or sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    total = 0
    for p in paths:
        changed, left = wrap_notebook(p, a.check)
        total += changed
        if changed: print(f"{'would wrap' if a.check else 'wrapped'} {changed} cell(s): {p}")
        for l in left: print(f"  still {len(l)} characters in {p.name}: {l.strip()[:100]}")
    return 1 if a.check and total else 0


if __name__ == "__main__":
    sys.exit(main())
