#!/usr/bin/env python3
"""Layout check for the Dirigo workspace; .ci/run runs it on every change.

Rule 1: no import cycle inside a crate. The engine is built in layers and
every import points down: a module uses the modules below it, never one
above. In a cycle (app -> journal -> node -> app) no module is below
another, so none can be read, tested or moved alone. For each library crate
(a workspace member with src/lib.rs) the check reads every `crate::`,
`super::` and `self::` path in the code under src/ (not src/bin or main.rs;
comments and literals removed first, so a doc link like [`crate::key_hash`]
does not count), resolves it to the longest prefix that is a module, and
finds the strongly connected components of two graphs: top-level modules
(`runtime::shard` counts as `runtime`) and module files. The crate root
(lib.rs) only re-exports and is left out.

Rule 2: no function in engine/src over MAX_FN_LINES lines, from the line of
its `fn` to the line of its closing brace. TigerBeetle style: a function
short enough to read at once is one whose every case a reader can hold.

  python3 tools/check-layout.py               check both rules
  python3 tools/check-layout.py --graph [C]   print crate C's module graphs
  python3 tools/check-layout.py --self-test   run the built-in fixtures
Exit status: 0 when clean, 1 on a violation or a failed self-test.
"""
import argparse
import re
import sys
import tempfile
import tomllib
from collections import namedtuple
from pathlib import Path

MAX_FN_LINES = 70
FN_RULE_DIR = "engine/src"

# --- Lexer: Rust source to tokens, without comments and literals ---------

Tok = namedtuple("Tok", "text line ident")
# One token at a time, first match wins: what is skipped (space, // comments,
# raw strings r#".."# and br"..", strings "..", b"..", c"..", char literals
# 'x' '\'' '\u{1F600}' b'x', and lifetimes or labels 'a 'static, which are
# a ' and an identifier that no ' closes), a block comment (they nest, so it
# is skipped by block_comment_end), identifiers (also r#type), punctuation.
TOKEN = re.compile(r"""
    (?P<skip> \s+ | //[^\n]* | [bc]?r(?P<hashes>\#*)".*?"(?P=hashes)
            | [bc]?"(?:\\.|[^\\"])*" | b?'(?:\\u\{[^}]*\}|\\.|[^\\'])' | '\w+ )
  | (?P<block> /\* )
  | (?P<word> r\#\w+ | \w+ )
  | (?P<punct> :: | . )""", re.VERBOSE | re.DOTALL)
COMMENT_MARK = re.compile(r"/\*|\*/")


def block_comment_end(src, i):
    """/* a /* b */ c */ is one comment."""
    depth = 0
    for m in COMMENT_MARK.finditer(src, i):
        depth += 1 if m[0] == "/*" else -1
        if depth == 0:
            return m.end()
    return len(src)


def lex(src):
    """Identifier and punctuation tokens (`::` is one) with their lines,
    ending with an empty sentinel token."""
    toks, i, line = [], 0, 1
    while i < len(src):
        m = TOKEN.match(src, i)
        j = block_comment_end(src, i) if m["block"] else m.end()
        if m["word"] or m["punct"]:
            toks.append(Tok(m[0], line, bool(m["word"])))
        line += src.count("\n", i, j)
        i = j
    return toks + [Tok("", line, False)]


# --- Rule 1: the module graph ---------------------------------------------

def library_crates(root):
    members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
    return [m for m in members if (root / m / "src" / "lib.rs").is_file()]


def crate_modules(src):
    """Module path ("a::b") -> its file, for the module files under src/."""
    mods = {}
    for f in sorted(src.rglob("*.rs")):
        parts = list(f.relative_to(src).parts)
        if parts[0] != "bin" and parts not in (["lib.rs"], ["main.rs"]):
            parts = parts[:-1] if parts[-1] == "mod.rs" else parts[:-1] + [f.stem]
            mods["::".join(parts)] = f
    return mods


def use_tree(toks, i, prefix, out):
    """Parses the path or use tree at toks[i] (`a::b`, `a::{b::C, d::{self, E}}`),
    appends (segments, line) for each leaf to out, returns the next index."""
    segs = list(prefix)
    while toks[i].ident and toks[i + 1].text == "::":
        segs.append(toks[i].text)
        i += 2
    if toks[i].text == "{":
        i += 1
        while toks[i].text not in ("}", ""):
            i = use_tree(toks, i, segs, out)
            if toks[i].text not in (",", "}"):
                return i                    # not a use tree after all
            i += toks[i].text == ","
        return i + 1
    if toks[i].ident:
        segs.append(toks[i].text)
        i += 1
    out.append((segs, toks[i - 1].line))
    return i


def crate_paths(toks, here):
    """(segments, line, module) for each crate::/super::/self:: path; the
    module is the file's plus any inline `mod x { .. }` around the path."""
    depth, inline, i = 0, [], 0
    while toks[i].text:
        t = toks[i]
        if t.text == "mod" and toks[i + 1].ident and toks[i + 2].text == "{":
            inline.append((toks[i + 1].text, depth))
        elif t.text in ("{", "}"):
            depth += 1 if t.text == "{" else -1
            if inline and inline[-1][1] == depth:
                inline.pop()
        elif t.text in ("crate", "super", "self") and toks[i + 1].text == "::" and \
                [x.text for x in toks[i - 2:i]] != ["(", "in"]:   # pub(in crate::a)
            out = []
            i = use_tree(toks, i, [], out)
            yield from ((s, line, here + [m for m, _ in inline]) for s, line in out)
            continue
        i += 1


def resolve(segs, here, modules):
    """The longest module prefix of a path written in module `here`, or
    None for the crate root."""
    path = list(here)
    for s in segs:
        if s == "crate":
            path = []
        elif s == "super":
            if not path:
                return None
            path.pop()
        elif s != "self":
            path.append(s)
    prefixes = ("::".join(path[:n]) for n in range(len(path), 0, -1))
    return next((p for p in prefixes if p in modules), None)


def file_graph(root, crate):
    """Module -> {module it uses: 'file:line path' of its first use}."""
    modules = crate_modules(root / crate / "src")
    graph = {m: {} for m in modules}
    for mod, f in modules.items():
        where = f.relative_to(root).as_posix()
        for segs, line, here in crate_paths(lex(f.read_text()), mod.split("::")):
            dst = resolve(segs, here, modules)
            if dst and dst != mod:
                graph[mod].setdefault(dst, f"{where}:{line} {'::'.join(segs)}")
    return graph


def top_graph(graph):
    top = {}
    for a, outs in graph.items():
        edges = top.setdefault(a.split("::")[0], {})
        for b, why in outs.items():
            if b.split("::")[0] != a.split("::")[0]:
                edges.setdefault(b.split("::")[0], why)
    return top


def sccs(graph):
    """Tarjan's strongly connected components of more than one node."""
    index, low, stack, found = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def shortest_cycle(graph, comp):
    """A shortest cycle from comp[0] back to itself inside comp (BFS)."""
    start, prev, queue = comp[0], {}, [comp[0]]
    for v in queue:
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w in comp and w not in prev:
                prev[w] = v
                queue.append(w)
    raise AssertionError("a strongly connected component without a cycle")


def cycle_messages(root, crate):
    graph, msgs, named = file_graph(root, crate), [], []
    for kind, g in (("top-level modules", top_graph(graph)), ("module files", graph)):
        for comp in (c for c in sccs(g) if c not in named):   # once if at both levels
            named.append(comp)
            cycle = shortest_cycle(g, comp)
            msgs.append(f"{crate}: cycle {' -> '.join(cycle)}")
            msgs += [f"  {a} -> {b}: {g[a][b]}" for a, b in zip(cycle, cycle[1:])]
            msgs.append(f"  ({len(comp)} {kind} in this cycle group: {', '.join(comp)})")
    return msgs


# --- Rule 2: function length ----------------------------------------------

def body_end(toks, i):
    """Index of the `}` closing the body of a fn whose signature starts at
    toks[i]; None for a declaration ending in `;` (`-> [u8; 4]` is not one)."""
    parens = braces = 0
    while toks[i].text:
        x = toks[i].text
        parens += {"(": 1, "[": 1, ")": -1, "]": -1}.get(x, 0)
        braces += {"{": 1, "}": -1}.get(x, 0)
        if x == ";" and parens == braces == 0:
            return None
        if x == "}" and braces == 0:
            return i
        i += 1
    return None


def long_functions(path):
    """(line, name, length) of each `fn name` with a body over the limit;
    `fn(u8) -> u8` pointer types have no name and are skipped."""
    toks = lex(path.read_text())
    for i, t in enumerate(toks):
        if t.text == "fn" and toks[i + 1].ident:
            end = body_end(toks, i + 2)
            n = end and toks[end].line - t.line + 1
            if n and n > MAX_FN_LINES:
                yield t.line, toks[i + 1].text, n


def long_fn_messages(root):
    return [f"{f.relative_to(root).as_posix()}:{line} fn {name}: {n} lines (max {MAX_FN_LINES})"
            for f in sorted((root / FN_RULE_DIR).rglob("*.rs"))
            for line, name, n in long_functions(f)]


# --- Driver ---------------------------------------------------------------

def check(root):
    cycles = [m for c in library_crates(root) for m in cycle_messages(root, c)]
    longs = long_fn_messages(root)
    msgs = cycles + longs
    if cycles:
        msgs.append("check-layout: import cycles above; every `crate::` import must point "
                    "down a layer (move what both sides need below both, or pass it in)")
    if longs:
        msgs.append(f"check-layout: {len(longs)} functions over {MAX_FN_LINES} lines in "
                    f"{FN_RULE_DIR}; split each into named steps")
    print("\n".join(msgs or ["check-layout: no import cycles, no long functions"]))
    return 1 if msgs else 0


def print_graphs(root, only):
    crates = library_crates(root)
    if only and only not in crates:
        sys.exit(f"check-layout: {only!r} is not a library crate ({', '.join(crates)})")
    for crate in [only] if only else crates:
        graph = file_graph(root, crate)
        for kind, g in (("top-level modules", top_graph(graph)), ("module files", graph)):
            print(f"# {crate}: {kind}")
            print("\n".join(f"{a} -> {', '.join(sorted(g[a]))}".rstrip() for a in sorted(g)))
    return 0


FIXTURES = {
    "Cargo.toml": '[workspace]\nmembers = ["engine", "tools"]\n',
    "tools/src/main.rs": "use crate::x::Y;\n",          # not a library crate
    "engine/src/lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub mod d;\nmod long;\n",
    "engine/src/a.rs": r'''//! Links: [`crate::d::X`] and [crate::d].
use crate::{
    b::Thing,
    c::{self, Other},
};
/// Calls [`crate::d::X`]; /* crate::d::X */ too.
/** crate::d::X /* nested */ crate::d::X */
pub fn f() {
    let s = "quote \" crate::d::y";
    let r = r#"raw "crate::d::z" "#;
    let b = (b"crate::d::w", br"crate::d::v");
    let c = ['{', '\'', '\u{1F600}', '"', b'"'];
}
''',
    "engine/src/b.rs": "pub struct Thing;\nfn g<'a>(x: &'a str) -> &'a str {\n"
                       "    crate::a::f();\n    x\n}\n",
    "engine/src/c/mod.rs": "pub mod e;\nuse super::d::X;\nuse super::Root;\n"
                           "pub use self::e::Y;\npub struct Other;\n",
    "engine/src/c/e.rs": "use super::super::d::X;\npub struct Y;\n"
                         "#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    "engine/src/d.rs": "pub struct X;\n",
}
TRICKY = ["let open = '{';", 'let close = "}";', 'let raw = r#"}"#;', "/* } */ // }",
          "fn inner<'a>(x: &'a str) -> &'a str { x }", r"let quote = '\'';",
          "'outer: loop { break 'outer; }", "let s: &'static str = \"{\";",
          "let pair = ('a','}');"]


def self_test():
    fns = []                            # 70 and 71 lines, with the fn and } lines
    for name, ret, lines in (("seventy", "", 70), ("seventy_one", " -> [u8; 4]", 71)):
        body = TRICKY + ["let _ = 0;"] * (lines - 2 - len(TRICKY))
        fns.append(f"fn {name}(){ret} {{\n" + "".join(f"    {x}\n" for x in body) + "}\n")
    long_rs = "type F = fn(u8) -> u8;\ntrait T {\n    fn decl(&self) -> [u8; 4];\n" \
              + fns[0] + "}\n" + fns[1]      # a decl, then a default body
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, text in {**FIXTURES, "engine/src/long.rs": long_rs}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        graph, cycles = file_graph(root, "engine"), cycle_messages(root, "engine")
        longs, crates = long_fn_messages(root), library_crates(root)
    toks = [t.text for t in lex(FIXTURES["engine/src/a.rs"])]
    checks = [
        ("only library crates are checked", crates == ["engine"]),
        ("a cycle through a grouped multi-line use is found, with its lines", cycles == [
            "engine: cycle a -> b -> a", "  a -> b: engine/src/a.rs:3 crate::b::Thing",
            "  b -> a: engine/src/b.rs:3 crate::a::f",
            "  (2 top-level modules in this cycle group: a, b)"]),
        ("a grouped use gives an edge per module", set(graph["a"]) == {"b", "c"}),
        ("crate:: in comments and literals is no edge", toks.count("crate") == 1),
        ("super:: in a mod.rs is the crate root", set(graph["c"]) == {"c::e", "d"}),
        ("super:: in a child file and inline mod", set(graph["c::e"]) == {"d"}),
        ("braces balance past chars and lifetimes", toks.count("{") == toks.count("}")),
        ("literals and lifetimes leave no tokens", [t.text for t in lex(
            r''' '\u{1F600}' '\'' '{' b'"' "\"}" br#"}"# &'a x''')] == ["&", "x", ""]),
        ("a 71-line fn is reported, a 70-line one is not",
         longs == ["engine/src/long.rs:75 fn seventy_one: 71 lines (max 70)"]),
    ]
    for what, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    failed = sum(not ok for _, ok in checks)
    print(f"self-test: {len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description="Import cycles and long functions.")
    ap.add_argument("--graph", nargs="?", const="", metavar="CRATE",
                    help="print the module graphs of CRATE (default: every library crate)")
    ap.add_argument("--self-test", action="store_true", help="run the built-in fixtures")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="workspace root (default: the directory above tools/)")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if args.graph is not None:
        return print_graphs(args.root, args.graph)
    return check(args.root)


if __name__ == "__main__":
    sys.exit(main())
