#!/usr/bin/env python3
"""Compute Zeek's `likely_server_ports` from Zeek's own scripts.

Reads the Zeek git mirror (no work tree; files come from `git show`) and
simulates, at the level needed for this one variable, what Zeek does at
start-up:

* which scripts get loaded: base/init-bare.zeek, base/init-frameworks-and-bifs.zeek,
  base/init-default.zeek unless -b, then the scripts named on the command
  line (src/zeek-setup.cc); `@load` resolved like src/scan.l + src/util.cc:
  names starting with '.' relative to the loading file, everything else
  along ZEEKPATH (".:scripts:scripts/policy:scripts/site:build/scripts:
  build/scripts/builtin-plugins", cmake_templates/zeek-path-dev.in),
  trying NAME.zeek before NAME, a directory meaning its __load__.zeek, and
  every file loaded only once;
* `@if/@ifdef/@ifndef/@else/@endif`, evaluated against a stated build
  (Spicy on, no cluster, not supervised); for a condition we cannot evaluate
  both branches are taken, with a note if they hold @loads or port code;
* `module X;` scoping (a loaded file starts in its loader's module, which is
  restored afterwards, like FileInfo in src/scan.l);
* port-set constants (`const/global/option NAME ... = {...}`), and
  `redef NAME +=|-=|= ...` on them or on likely_server_ports, applied in load
  order (parse time); command-line `NAME=VALUE` becomes a trailing redef;
* `Analyzer::register_for_ports(tag, server_ports, [non_server_ports])` and
  `PacketAnalyzer::register_for_ports(parent, child, server_ports, [...])`,
  which run in zeek_init and do `likely_server_ports += server_ports`
  (scripts/base/frameworks/analyzer/main.zeek, scripts/base/packet-protocols/main.zeek)
  with the constants' final values.  `register_for_port` (singular) and the
  Spicy `spicy_analyzer_for_port` path do NOT touch likely_server_ports and
  are only recorded.

The C++ side reads likely_server_ports once, on the first packet
(IPBasedAnalyzer::IsLikelyServerPort, src/packet_analysis/protocol/ip/IPBasedAnalyzer.cc),
i.e. after zeek_init, so the result is: parse-time value ∪ everything added
in zeek_init.

Usage:
    scripts/zeek_likely_server_ports.py --repo ZEEK-CLONE [--commit SHA] [--out DIR] [--install] [--no-spicy]
Writes default.txt, bare.txt, per_script.json, corpus_ports.json (and
corpus_details.json) into --out, and prints a summary. With --install it also
writes the two files the repository keeps: harness/analysis/zeek_ports.txt (the
default set, which harness uses) and captures/zeek/likely_server_ports.json (the
set each conformance trace's btest ran Zeek with).
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
COMMIT = "a13de64fbbdb01f90961c04719b308fbbb6d199e"
MANIFEST = os.path.join(CHECKOUT, "captures", "zeek", "manifest.json")
OUT = os.path.join(os.environ.get("TMPDIR", "/tmp"), "zeek-likely-server-ports")

# ZEEKPATH of btest (testing/btest/btest.cfg -> build/zeek-path-dev). "." is the
# current directory (for btest: the test's scratch dir holding the %INPUT copy
# and the @TEST-START-FILE files). build/scripts only holds generated BiF
# scripts (base/bif/...); builtin-plugins only has stubs unless plugins are
# built in (ZEEK_INCLUDE_PLUGINS).
ZEEKPATH = [".", "scripts", "scripts/policy", "scripts/site", "<build>/scripts",
            "<build>/scripts/builtin-plugins"]

PORT_RE = re.compile(r"\b(\d+)/(tcp|udp|icmp|unknown)\b")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*"
PROTO_ORDER = {"tcp": 0, "udp": 1, "icmp": 2, "unknown": 3}


def port_key(p):
    num, proto = p.split("/")
    return (int(num), PROTO_ORDER[proto])


def sorted_ports(ports):
    return sorted(ports, key=port_key)


class ZeekError(Exception):
    pass


# --------------------------------------------------------------------------
# Repository access
# --------------------------------------------------------------------------

class Repo:
    def __init__(self, gitdir, commit):
        self.gitdir, self.commit = gitdir, commit
        names = subprocess.run(["git", "-C", gitdir, "ls-tree", "-r", "--name-only", commit],
                               check=True, capture_output=True, text=True).stdout.split("\n")
        self.files = set(n for n in names if n)
        self.dirs = set()
        for n in self.files:
            parts = n.split("/")
            for i in range(1, len(parts)):
                self.dirs.add("/".join(parts[:i]))
        self._cache = {}

    def read(self, path):
        if path not in self._cache:
            self._cache[path] = subprocess.run(
                ["git", "-C", self.gitdir, "show", f"{self.commit}:{path}"],
                check=True, capture_output=True, text=True).stdout
        return self._cache[path]


def normpath(p):
    return os.path.normpath(p).replace("\\", "/")


# --------------------------------------------------------------------------
# Build / run-time facts used to evaluate @if conditions
# --------------------------------------------------------------------------

def make_conditions(spicy=True):
    """Atoms that @if/@ifdef conditions in scripts/ use, for a standard
    (non-cluster, non-supervised) build.  Anything not listed is 'unknown'."""
    calls = {
        "have_spicy()": spicy,
        "have_spicy_analyzers()": spicy,
        "Cluster::is_enabled()": False,
        "Supervisor::is_supervised()": False,
        "Supervisor::is_supervisor()": False,
        "Cluster::local_node_type()": "'NONE'",
    }
    names = {
        "Cluster::MANAGER": "'MANAGER'", "Cluster::WORKER": "'WORKER'",
        "Cluster::PROXY": "'PROXY'", "Cluster::LOGGER": "'LOGGER'",
        "Cluster::NONE": "'NONE'",
    }
    # @ifdef: QUIC is a Spicy analyzer (src/analyzer/protocol/quic/QUIC.evt),
    # so its tag exists iff Spicy analyzers are built.
    defined = {"Analyzer::ANALYZER_QUIC": spicy}
    return calls, names, defined


class CondEval:
    def __init__(self, spicy=True):
        self.calls, self.names, self.defined = make_conditions(spicy)

    def ifdef(self, ident):
        return self.defined.get(ident.strip())  # None = unknown

    def expr(self, text):
        """Evaluate an @if expression; None if it uses anything unknown."""
        t = text
        for k, v in self.calls.items():
            t = t.replace(k, str(v))
        for k, v in self.names.items():
            t = re.sub(re.escape(k) + r"\b", v, t)
        t = t.replace("&&", " and ").replace("||", " or ")
        t = re.sub(r"!(?!=)", " not ", t)
        # Only literals and operators may remain.
        if re.search(r"[A-Za-z_]", re.sub(r"\b(True|False|and|or|not)\b|'[A-Z]+'", "", t)):
            return None
        try:
            return bool(eval(t, {"__builtins__": {}}, {}))
        except Exception:
            return None


# Anything that could influence likely_server_ports (or what gets loaded).
RELEVANT_RE = re.compile(r"@load\b|register_for_port|likely_server_ports|"
                         r"\bredef\s+[\w:]*ports\b|\{[^}]*\b\d+/(tcp|udp|icmp)\b")


# --------------------------------------------------------------------------
# Lexical helpers
# --------------------------------------------------------------------------

def strip_comments(text):
    """Remove '#' comments and blank out the contents of strings and /patterns/
    (keeping offsets and newlines) so that braces, commas or '#' inside them
    don't confuse the scanners below.  A '/' starts a pattern when it follows
    an operator or '(' ',' etc., or the keyword 'in'/'return' (after a number,
    name or ')' it is a division or a port like 80/tcp)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            j = min(j, n - 1) if j < n and text[j] == '"' else min(j, n) - 1
            out.append('"' + "_" * (j - i - 1) + (text[j] if j > i else ""))
            i = j + 1
            continue
        if c == "/" and _pattern_starts(text, i):
            j = i + 1
            while j < n and text[j] not in "/\n":
                j += 2 if text[j] == "\\" else 1
            if j < n and text[j] == "/":
                out.append("/" + "_" * (j - i - 1) + "/")
                i = j + 1
                continue
        if c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _pattern_starts(text, i):
    before = text[max(0, i - 20):i].rstrip()
    if not before:
        return True
    if before[-1] in "(,=|&{[!:;+~":
        return True
    return re.search(r"\b(in|return)$", before) is not None


def balanced_end(text, start, open_ch, close_ch):
    """Index just past the bracket matching text[start] == open_ch."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_ch:
            depth += 1
        elif text[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
    raise ZeekError("unbalanced %s" % open_ch)


def split_top(text, sep=","):
    """Split on sep at bracket depth 0."""
    parts, depth, cur = [], 0, []
    for c in text:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def expr_end(text, start):
    """End of an initializer/redef expression: first ';' or '&attr' at depth 0."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and (c == ";" or (c == "&" and text[i + 1:i + 2] != "&")):
            return i
    return len(text)


# --------------------------------------------------------------------------
# Preprocessor: @if/@else/@endif, @load
# --------------------------------------------------------------------------

DIRECTIVE_RE = re.compile(r"^\s*@(ifdef|ifndef|if|else|endif|load-sigs|load-plugin|load|unload|prefixes|deprecated)\b(.*)$")


def preprocess(text, fname, cond, problems):
    """Return (active_text, loads): inactive lines and directive lines are
    blanked (offsets kept); loads = [(offset, name)] of the active @loads."""
    lines = strip_comments(text).split("\n")
    out, loads = [], []
    stack = []           # frames: [parent_active, branch_value (True/False/None), unknown_index]
    unknown_blocks = []  # (condition, [lines]) of blocks we could not evaluate
    active, offset, i = True, 0, 0
    while i < len(lines):
        line = lines[i]
        consumed = [line]
        m = DIRECTIVE_RE.match(line)
        kind, rest = (m.group(1), m.group(2)) if m else (None, None)
        if kind in ("if", "ifdef", "ifndef"):
            # conditions may span lines; read until the parentheses balance
            cond_text = rest
            while cond_text.count("(") > cond_text.count(")") and i + 1 < len(lines):
                i += 1
                consumed.append(lines[i])
                cond_text += " " + lines[i]
            inner = cond_text.strip()
            if inner.startswith("(") and inner.endswith(")"):
                inner = inner[1:-1].strip()
            if kind == "if":
                val = cond.expr(inner)
            else:
                val = cond.ifdef(inner)
                if val is not None and kind == "ifndef":
                    val = not val
        # lines inside unevaluable blocks (whose surroundings are active)
        for frame in stack:
            if frame[2] is not None and frame[0]:
                unknown_blocks[frame[2]][1].extend(consumed)
        if kind in ("if", "ifdef", "ifndef"):
            idx = None
            if val is None:
                idx = len(unknown_blocks)
                unknown_blocks.append((f"@{kind} ( {inner} )", []))
            stack.append([active, val, idx])
            # an unevaluable condition: both branches are taken (over-approximation)
            active = active and (val is not False)
        elif kind == "else":
            top = stack[-1]
            top[1] = None if top[1] is None else (not top[1])
            active = top[0] and (top[1] is not False)
        elif kind == "endif":
            active = stack.pop()[0]
        elif kind and active:
            if kind == "load":
                loads.append((offset, rest.strip()))
            elif kind == "load-plugin":
                problems.append(f"{fname}: @load-plugin {rest.strip()} not followed")
            elif kind in ("unload", "prefixes"):
                problems.append(f"{fname}: @{kind}{rest} ignored (no prefix files exist in scripts/)")
        for c in consumed:
            out.append(c if (active and not kind) else " " * len(c))
            offset += len(c) + 1
        i += 1
    for cond_text, body in unknown_blocks:
        if RELEVANT_RE.search("\n".join(body)):
            problems.append(f"{fname}: cannot evaluate {cond_text}; it guards @load or port code, "
                            "took both branches")
    return "\n".join(out), loads


# --------------------------------------------------------------------------
# Statements of interest
# --------------------------------------------------------------------------

STMT_RE = re.compile(
    r"\bmodule\s+(?P<module>" + IDENT + r")\s*;"
    r"|\b(?P<decl>const|global|option)\s+(?P<dname>" + IDENT + r")\s*(?::\s*(?P<dtype>[^=;&]+?))?\s*(?P<dop>=|;|&)"
    r"|\bredef\s+(?P<rname>" + IDENT + r")\s*(?P<rop>\+=|-=|=)"
    r"|\b(?P<fw>Analyzer|PacketAnalyzer)::(?P<func>register_for_ports|register_for_port)\s*\("
    r"|\badd\s+likely_server_ports\s*\["
    r"|(?<![\w:])likely_server_ports\s*(?P<lop>\+=|-=|=)(?!=)"
    r"|\b(?P<hkind>event|function|hook)\s+(?P<hname>" + IDENT + r")\s*\("
)


def brace_depths(text):
    """depth[i] = '{' nesting depth at offset i; `export { ... }` doesn't count
    (its declarations are top level)."""
    depth, d, stack = [0] * (len(text) + 1), 0, []
    for i, c in enumerate(text):
        depth[i] = d
        if c == "{":
            is_export = re.search(r"\bexport\s*$", text[max(0, i - 40):i]) is not None
            stack.append(is_export)
            if not is_export:
                d += 1
        elif c == "}":
            if stack and not stack.pop():
                d -= 1
    depth[len(text)] = d
    return depth


def parse_statements(text):
    """Yield statements in source order as dicts."""
    depth = brace_depths(text)
    handler = None  # most recent top-level event/function/hook header
    for m in STMT_RE.finditer(text):
        pos, d = m.start(), depth[m.start()]
        if m.group("hkind") and d == 0:
            handler = f"{m.group('hkind')} {m.group('hname')}"
            continue
        ctx = handler if d > 0 else None
        if m.group("module") and d == 0:
            yield {"kind": "module", "name": m.group("module"), "pos": pos}
        elif m.group("decl"):
            if d > 0:
                continue  # 'local'-like or record field; globals are top level
            op = m.group("dop")
            expr = None
            if op == "=":
                end = expr_end(text, m.end())
                expr = text[m.end():end].strip()
            yield {"kind": "decl", "name": m.group("dname"), "type": (m.group("dtype") or "").strip(),
                   "expr": expr, "pos": pos}
        elif m.group("rname") and d == 0:
            end = expr_end(text, m.end())
            yield {"kind": "redef", "name": m.group("rname"), "op": m.group("rop"),
                   "expr": text[m.end():end].strip(), "pos": pos}
        elif m.group("func"):
            open_paren = m.end() - 1
            args = split_top(text[open_paren + 1:balanced_end(text, open_paren, "(", ")") - 1])
            yield {"kind": m.group("func"), "fw": m.group("fw"), "args": args, "pos": pos, "ctx": ctx}
        elif m.group(0).startswith("add"):
            open_b = m.end() - 1
            elem = text[open_b + 1:balanced_end(text, open_b, "[", "]") - 1]
            yield {"kind": "runtime_lsp", "op": "add", "expr": "{" + elem + "}", "pos": pos, "ctx": ctx}
        elif m.group("lop"):
            end = expr_end(text, m.end())
            expr = text[m.end():end].strip()
            yield {"kind": "runtime_lsp", "op": m.group("lop"), "expr": expr, "pos": pos, "ctx": ctx}


# --------------------------------------------------------------------------
# The loader / evaluator
# --------------------------------------------------------------------------

_PARSED = {}   # (path, text hash, conditions) -> (loads, statements, problems)


class PortSet(OrderedDict):
    """port -> script that put it there."""


class Unevaluable(Exception):
    pass


class Zeek:
    """One simulated Zeek start-up."""

    def __init__(self, repo, cond, cwd_files=None):
        self.repo, self.cond = repo, cond
        self.cwd_files = cwd_files or {}   # name in "." -> text (btest scratch dir)
        self.loaded = []                   # files in load order
        self.loaded_set = set()
        self.sets = {"likely_server_ports": PortSet()}   # full name -> PortSet
        self.registrations = []            # (file, fw, server_expr, module, ctx)
        self.all_registered = []           # (file, tag args, port-set args, module): Analyzer::ports
        self.singular = []                 # register_for_port calls (not added)
        self.runtime = []                  # runtime likely_server_ports changes
        self.redefs_lsp = []               # direct redefs of likely_server_ports
        self.problems = []
        self.unresolved = []

    # ---- file resolution (src/scan.l find_relative_script_file, util.cc) ----
    def _exists(self, path):
        """'file', 'dir' or None for a path in the repo / virtual cwd."""
        if path.startswith("./"):
            name = path[2:]
            if name in self.cwd_files:
                return "file"
            return None
        if path.startswith("<build>/"):
            return None
        if path in self.repo.files:
            return "file"
        if path in self.repo.dirs:
            return "dir"
        return None

    def resolve(self, name, loader_dir):
        if name.startswith("/"):
            raise ZeekError(f"absolute path {name}")
        search = [loader_dir] if name.startswith(".") else ZEEKPATH
        for base in search:
            cand = normpath(base + "/" + name) if base != "." else "./" + normpath(name)
            if base == "." and cand == "./.":
                continue
            for c in (cand + ".zeek", cand):
                kind = self._exists(c)
                if kind == "file":
                    return c
                if kind == "dir" and self._exists(c + "/__load__.zeek"):
                    return c + "/__load__.zeek"
        # Generated at build time (build/scripts): BiF scripts, builtin-plugins
        # stubs, and templates configured by scripts/CMakeLists.txt.
        if not name.startswith(".") and ("scripts/" + normpath(name) + ".zeek.in") in self.repo.files:
            return "<build>/scripts/" + normpath(name) + ".zeek"
        if re.match(r"(base/bif|builtin-plugins)(/|$)", name):
            return "<build>/scripts/" + name
        return None

    def text_of(self, path):
        if path.startswith("./"):
            return self.cwd_files[path[2:]]
        return self.repo.read(path)

    # ---- loading ----
    def load(self, name, loader_dir="scripts", module="GLOBAL", loader=None):
        path = self.resolve(name, loader_dir)
        if path is None:
            self.unresolved.append((loader, name))
            return module
        return self.load_path(path, module)

    def load_path(self, path, module="GLOBAL"):
        if path in self.loaded_set:
            return module
        self.loaded_set.add(path)
        self.loaded.append(path)
        if path.startswith("<build>/"):
            template = "scripts/" + path[len("<build>/scripts/"):] + ".in"
            if template in self.repo.files:
                self.run_text(self.repo.read(template), template, module)
            return module   # generated BiF declarations: no port sets
        self.run_text(self.text_of(path), path, module)
        return module   # FileInfo restores the loader's module

    def run_text(self, text, path, module):
        key = (path, hash(text), id(self.cond))
        if key not in _PARSED:
            problems = []
            active, loads = preprocess(text, path, self.cond, problems)
            _PARSED[key] = (loads, list(parse_statements(active)), problems)
        loads, stmts, problems = _PARSED[key]
        self.problems.extend(problems)
        items = [(off, "load", n) for off, n in loads] + [(s["pos"], "stmt", s) for s in stmts]
        items.sort(key=lambda x: (x[0], 0 if x[1] == "load" else 1))
        loader_dir = os.path.dirname(path) or "."
        if path.startswith("./"):
            loader_dir = "."
        for _, kind, item in items:
            if kind == "load":
                self.load(item, loader_dir, module, loader=path)
            else:
                module = self.apply(item, path, module)

    # ---- name lookup (module-local first, then GLOBAL) ----
    def lookup(self, name, module):
        if "::" in name:
            return name if name in self.sets else None
        if module != "GLOBAL" and f"{module}::{name}" in self.sets:
            return f"{module}::{name}"
        return name if name in self.sets else None

    def full_name(self, name, module):
        if "::" in name or module == "GLOBAL":
            return name
        return f"{module}::{name}"

    # ---- set expressions ----
    def eval_set(self, expr, module, origin):
        """Evaluate a set-of-port expression to a PortSet."""
        e = expr.strip()
        if e.startswith("{") and balanced_end(e, 0, "{", "}") == len(e):
            elems = split_top(e[1:-1])
        elif re.match(r"set\s*\(", e) and e.endswith(")"):
            elems = split_top(e[e.index("(") + 1:-1])
        elif re.fullmatch(IDENT, e):
            full = self.lookup(e, module)
            if full is None:
                raise Unevaluable(e)
            return PortSet(self.sets[full])
        else:
            raise Unevaluable(e)
        out = PortSet()
        for el in elems:
            m = re.fullmatch(r"(\d+)/(tcp|udp|icmp|unknown)", el)
            if m:
                out.setdefault(el, origin)
            elif re.fullmatch(IDENT, el) and self.lookup(el, module):
                for p, o in self.sets[self.lookup(el, module)].items():
                    out.setdefault(p, o)
            else:
                raise Unevaluable(el)
        return out

    # ---- statements ----
    def apply(self, st, path, module):
        k = st["kind"]
        if k == "module":
            return st["name"]
        if k == "decl":
            full = self.full_name(st["name"], module)
            is_port_set = re.fullmatch(r"set\s*\[\s*port\s*\]", st["type"] or "") is not None
            if st["expr"] is None:
                if is_port_set:
                    self.sets.setdefault(full, PortSet())
                return module
            try:
                val = self.eval_set(st["expr"], module, path)
            except Unevaluable:
                looks_like_port_set = (re.match(r"(\{|set\s*\()", st["expr"]) and PORT_RE.search(st["expr"])
                                       and not re.search(r"\]\s*=", st["expr"]))  # tables have [k] = v
                if is_port_set or looks_like_port_set:
                    self.problems.append(f"{path}: cannot evaluate initializer of {full}: {st['expr'][:60]}")
                return module
            if val or is_port_set:
                self.sets[full] = val
            return module
        if k == "redef":
            full = self.lookup(st["name"], module)
            if full is None:
                if PORT_RE.search(st["expr"]):
                    self.problems.append(f"{path}: redef of unknown port set {st['name']}")
                return module
            val = self.eval_set(st["expr"], module, path)
            self.apply_op(full, st["op"], val)
            if full == "likely_server_ports":
                self.redefs_lsp.append((path, st["op"], sorted_ports(val)))
            return module
        if k == "register_for_ports":
            n_tags = 1 if st["fw"] == "Analyzer" else 2
            if len(st["args"]) <= n_tags:
                raise ZeekError(f"{path}: odd call {st}")
            self.registrations.append((path, st["fw"], st["args"][n_tags], module, st["ctx"]))
            self.all_registered.append((path, st["args"][:n_tags], st["args"][n_tags:], module))
            return module
        if k == "register_for_port":
            self.singular.append((path, st["fw"], st["args"], st["ctx"]))
            return module
        if k == "runtime_lsp":
            if path in MECHANISM_FILES:
                return module      # the `likely_server_ports += server_ports` inside register_for_ports
            self.runtime.append((path, st["op"], st["expr"], module, st["ctx"]))
            return module
        return module

    def apply_op(self, full, op, val):
        cur = self.sets[full]
        if op == "=":
            self.sets[full] = PortSet(val)
        elif op == "+=":
            for p, o in val.items():
                cur.setdefault(p, o)
        elif op == "-=":
            for p in val:
                cur.pop(p, None)

    # ---- command-line settings become trailing redefs (src/scan.l <params>) ----
    def apply_setting(self, setting):
        m = re.match(r"([A-Za-z0-9_:]+)(\+|-)?=(.*)$", setting)
        name, op, val = m.group(1), (m.group(2) or "") + "=", m.group(3)
        if name in self.sets:
            self.apply_op(name, op, self.eval_set(val, "GLOBAL", "<params>"))
            if name == "likely_server_ports":
                self.redefs_lsp.append(("<params>", op, val))

    # ---- zeek_init: register_for_ports with the final constant values ----
    def finish(self):
        """Return PortSet port -> contributing script(s) as a list."""
        result = OrderedDict()
        for p, o in self.sets["likely_server_ports"].items():
            result.setdefault(p, []).append(f"{script_name(o)} (redef likely_server_ports)")
        for path, fw, expr, module, ctx in self.registrations:
            if ctx and not ctx.startswith("event zeek_init"):
                self.problems.append(f"{path}: register_for_ports in {ctx}, not zeek_init")
            val = self.eval_set(expr, module, path)
            for p, origin in val.items():
                who = script_name(path)
                if origin != path:
                    who += f" (port from {script_name(origin)})"
                result.setdefault(p, [])
                if who not in result[p]:
                    result[p].append(who)
        for path, op, expr, module, ctx in self.runtime:
            val = self.eval_set(expr, module, path)
            if op in ("add", "+="):
                for p in val:
                    result.setdefault(p, []).append(f"{script_name(path)} (runtime {op} in {ctx})")
            else:
                self.problems.append(f"{path}: runtime {op} on likely_server_ports in {ctx}")
                for p in val:
                    result.pop(p, None)
        return OrderedDict((p, result[p]) for p in sorted_ports(result))


MECHANISM_FILES = {"scripts/base/frameworks/analyzer/main.zeek",
                   "scripts/base/packet-protocols/main.zeek"}


def script_name(path):
    if path.startswith("scripts/"):
        return path[len("scripts/"):]
    return path


# --------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------

ESSENTIAL = ["base/init-bare.zeek", "builtin-plugins/__preload__.zeek",
             "base/init-frameworks-and-bifs.zeek"]


def run_zeek(repo, cond, bare, scripts=(), settings=(), cwd_files=None, extra_code=None):
    """Simulate `zeek [-b] scripts... settings...` (src/zeek-setup.cc input order)."""
    z = Zeek(repo, cond, cwd_files)
    for s in ESSENTIAL:
        z.load(s)
    if not bare:
        z.load("base/init-default.zeek")
    z.load("builtin-plugins/__load__.zeek")
    for s in scripts:
        z.load(s, ".")
    if extra_code is not None:      # -e CODE
        z.run_text(extra_code, "<command line -e>", "GLOBAL")
    for s in settings:
        z.apply_setting(s)
    ports = z.finish()
    if z.unresolved:
        z.problems.extend(f"{l}: cannot resolve @load {n}" for l, n in z.unresolved)
    return z, ports


def write_port_list(path, ports):
    with open(path, "w") as f:
        for p, who in ports.items():
            f.write(f"{p} {', '.join(who)}\n")


def candidate_scripts(repo):
    """Every script and package under scripts/ that could be loaded by name."""
    out = set()
    for f in repo.files:
        if not f.startswith("scripts/") or not f.endswith(".zeek"):
            continue
        rel = f[len("scripts/"):]
        if os.path.basename(rel) == "__load__.zeek":
            out.add(os.path.dirname(rel))
        else:
            out.add(rel)
    return sorted(out)


def aliases_for(repo, cond, canonical_names):
    """Other spellings that ZEEKPATH resolves to the same file."""
    z = Zeek(repo, cond)
    aliases = {}
    for name in canonical_names:
        spellings = {name}
        if name.endswith(".zeek"):
            spellings.add(name[:-5])
        for s in list(spellings):
            if s.startswith("policy/"):
                spellings.add(s[len("policy/"):])
        target = z.resolve(name, "scripts")
        for s in sorted(spellings - {name}):
            if z.resolve(s, "scripts") == target:
                aliases[s] = name
    return aliases


# --------------------------------------------------------------------------
# btest handling (auxil/btest/btest: readTestFile, %INPUT)
# --------------------------------------------------------------------------

def read_btest(text):
    """Return (input_text, files): %INPUT is the test file minus the
    @TEST-START-FILE..@TEST-END-FILE sections, up to the first
    @TEST-START-NEXT (later parts are separate tests)."""
    content, files, state, cur = [], {}, "test", None
    for line in text.splitlines(keepends=True):
        if state == "test":
            m = re.search(r"@TEST-START-FILE +([^\r\n ]*)", line)
            if m:
                state, cur = "file", m.group(1)
                files[cur] = ""
                continue
            if "@TEST-START-NEXT" in line:
                break
            content.append(line)
        else:
            if "@TEST-END-FILE" in line:
                state = "test"
                continue
            files[cur] += line
    return "".join(content), files


# getopt string of src/Options.cc: "B:c:E:e:f:G:H:I:i:j::n:O:0:o:p:r:s:T:t:U:w:X:..."
# (-j takes an optional, attached argument only)
OPTS_WITH_ARG = set("BcEefGHIinO0oprsTtUwX")


def parse_zeek_command(cmd):
    """Split a btest zeek command line into (bare, scripts, settings, plugins, -e code)."""
    toks = shlex.split(cmd.replace("$(pwd)", "PWD"), posix=True)
    try:
        i = toks.index("zeek") + 1
    except ValueError:
        raise ZeekError(f"no zeek in {cmd}")
    bare, scripts, settings, plugins, code = False, [], [], [], None
    while i < len(toks):
        t = toks[i]
        if t in ("|", "||", "&&", ";", "&"):
            break                              # end of the zeek command
        if re.match(r"\d*(>>?|<)(&\d+)?$", t):
            i += 2                             # redirection with separate target
            continue
        if re.match(r"\d*(>>?|<)", t):
            i += 1                             # redirection like >out, 2>&1
            continue
        if t.startswith("--"):
            if t == "--bare-mode":
                bare = True
            i += 1
            continue
        if t.startswith("-") and len(t) > 1:
            j = 1
            while j < len(t):
                c = t[j]
                if c == "b":
                    bare = True
                if c in OPTS_WITH_ARG:
                    arg = t[j + 1:] or toks[i + 1]
                    if not t[j + 1:]:
                        i += 1
                    if c == "e":
                        code = arg
                    break
                j += 1
            i += 1
            continue
        if "=" in t:
            settings.append(t)
        elif "::" in t:
            plugins.append(t)
        else:
            scripts.append(t)
        i += 1
    return bare, scripts, settings, plugins, code


def top_level_loads(text, cond):
    """The @load names of a script (active ones, in order)."""
    _, loads = preprocess(text, "<test>", cond, [])
    return [n for _, n in loads]


def spicy_ports_in_test(files):
    """Ports declared in .evt files (port/ports lines) or %port in .spicy files
    that a test compiles.  These reach Zeek via spicy_analyzer_for_port ->
    Analyzer::register_for_port (singular) only."""
    out = {}
    for name, text in files.items():
        if name.endswith(".evt"):
            ps = [f"{a}/{b}" for a, b in PORT_RE.findall(strip_comments(text))]
        elif name.endswith(".spicy"):
            ps = [f"{a}/{b}" for line in text.splitlines() if "%port" in line
                  for a, b in PORT_RE.findall(line)]
        else:
            continue
        if ps:
            out[name] = ps
    return out


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="a git clone (or bare mirror) of github.com/zeek/zeek")
    ap.add_argument("--commit", default=COMMIT)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--manifest", default=MANIFEST)
    ap.add_argument("--install", action="store_true",
                    help="also write harness/analysis/zeek_ports.txt and captures/zeek/likely_server_ports.json")
    ap.add_argument("--no-spicy", action="store_true",
                    help="evaluate for a build without Spicy (have_spicy() = F)")
    args = ap.parse_args()

    repo = Repo(args.repo, args.commit)
    cond = CondEval(spicy=not args.no_spicy)
    os.makedirs(args.out, exist_ok=True)

    # 1. default and bare
    zd, default = run_zeek(repo, cond, bare=False)
    zb, bare = run_zeek(repo, cond, bare=True)
    write_port_list(os.path.join(args.out, "default.txt"), default)
    write_port_list(os.path.join(args.out, "bare.txt"), bare)
    print(f"default: {len(default)} ports from {len(zd.loaded)} files; "
          f"bare: {len(bare)} ports from {len(zb.loaded)} files")
    for z, label in ((zd, "default"), (zb, "bare")):
        for p in z.problems:
            print(f"  [{label}] note: {p}")
        for path, fw, a, ctx in z.singular:
            print(f"  [{label}] register_for_port (not added to likely_server_ports): {path} {a} in {ctx}")

    # 2. per script (bare mode + that script's closure)
    bare_set = set(bare)
    per_script, problems = {}, {}
    names = candidate_scripts(repo)
    for name in names:
        try:
            z, ports = run_zeek(repo, cond, bare=True, scripts=[name])
        except ZeekError as e:
            problems[name] = str(e)
            continue
        extra = [p for p in ports if p not in bare_set]
        per_script[name] = {p: ports[p] for p in extra}
        if z.problems:
            problems[name] = z.problems
    with open(os.path.join(args.out, "per_script.json"), "w") as f:
        json.dump(OrderedDict([
            ("zeek_commit", args.commit),
            ("assumptions", {"spicy": not args.no_spicy, "cluster": False, "supervised": False,
                             "zeekpath": ":".join(ZEEKPATH)}),
            ("usage", "likely_server_ports = bare ∪ ⋃ scripts[s] for the loaded scripts s "
                      "(names are scripts/-relative; see aliases for other spellings)"),
            ("bare", sorted_ports(bare)),
            ("default", sorted_ports(default)),
            ("scripts", OrderedDict((n, sorted_ports(per_script[n])) for n in sorted(per_script))),
            ("contributors", OrderedDict((n, per_script[n]) for n in sorted(per_script) if per_script[n])),
            ("aliases", aliases_for(repo, cond, sorted(per_script))),
            ("problems", problems),
        ]), f, indent=1, ensure_ascii=False)
    print(f"per_script: {len(per_script)} scripts, "
          f"{sum(1 for v in per_script.values() if v)} add ports; {len(problems)} with notes")

    # 3. corpus
    if os.path.exists(args.manifest):
        corpus_report(repo, cond, args, default, bare,
                      json.load(open(os.path.join(args.out, "per_script.json"))))
    if args.install:
        install(args, default)


def install(args, default):
    """The repository's two copies: harness's default set, and the corpus's per-trace sets."""
    with open(os.path.join(CHECKOUT, "harness", "analysis", "zeek_ports.txt"), "w") as f:
        f.write(f"# likely_server_ports of a plain `zeek -r` run, Zeek {args.commit}\n"
                f"# (scripts/zeek_likely_server_ports.py --install): port/proto, then the scripts that add it\n")
        for port in sorted_ports(default):
            f.write(f"{port} {' '.join(sorted(set(default[port])))}\n")
    corpus = json.load(open(os.path.join(args.out, "corpus_ports.json")))
    with open(os.path.join(CHECKOUT, "captures", "zeek", "likely_server_ports.json"), "w") as f:
        json.dump(OrderedDict([
            ("about", "likely_server_ports as each entry's btest ran Zeek with (bare mode, the scripts it "
                      "loaded, its redefinitions), derived from Zeek's scripts by scripts/zeek_likely_server_ports.py"),
            ("zeek_commit", args.commit),
            ("traces", corpus)]), f, indent=1)
        f.write("\n")
    print("installed harness/analysis/zeek_ports.txt and captures/zeek/likely_server_ports.json")


def per_script_key(z, name):
    """The per_script.json key a @load/command-line name refers to."""
    target = z.resolve(name, ".")
    if target is None or target.startswith("./"):
        return None
    key = script_name(target.replace("<build>/scripts/", "scripts/"))
    return os.path.dirname(key) if key.endswith("/__load__.zeek") else key


def corpus_report(repo, cond, args, default, bare, pj):
    manifest = json.load(open(args.manifest))
    corpus, details = OrderedDict(), OrderedDict()
    for e in manifest["entries"]:
        test_path = e["zeek_test"]
        input_text, files = read_btest(repo.read(test_path))
        test_base = os.path.basename(test_path)
        bare_flag, cmd_scripts, settings, plugins, code = parse_zeek_command(e["zeek_command"])
        # btest scratch dir: the %INPUT copy plus the @TEST-START-FILE files
        cwd_files = dict(files)
        cwd_files[test_base] = input_text
        scripts = ["./" + test_base if s == "%INPUT" else s for s in cmd_scripts]
        z, ports = run_zeek(repo, cond, bare_flag, scripts, settings, cwd_files, code)

        # What the test loads itself: scripts on the command line + the @load
        # lines of %INPUT (when %INPUT is on the command line).
        derived = [s for s in cmd_scripts if s != "%INPUT"]
        if "%INPUT" in cmd_scripts:
            derived += top_level_loads(input_text, cond)
        listed = e["zeek_options"]["scripts"]
        keys = lambda names: {per_script_key(z, s) for s in names}
        mode_base = default if not bare_flag else bare
        from_test_file = [p for p, who in ports.items()
                          if any("./" in w for w in who)]
        union = set(mode_base) | set(from_test_file)
        for k in keys(derived):
            union |= set(pj["scripts"].get(k, []))
        corpus[e["trace"]] = sorted_ports(ports)
        details[e["trace"]] = OrderedDict([
            ("zeek_test", test_path),
            ("command", e["zeek_command"]),
            ("bare", bare_flag),
            ("manifest_bare", e["zeek_options"]["bare"]),
            ("derived_scripts", derived),
            ("manifest_scripts", listed),
            ("scripts_identical", derived == listed),
            ("scripts_same_files", keys(derived) == keys(listed)),
            ("settings", settings),
            ("manifest_settings", e["zeek_options"].get("settings", [])),
            ("plugins", plugins),
            ("ports_beyond_mode_base", sorted_ports(set(ports) - set(mode_base))),
            ("ports_from_test_file", sorted_ports(from_test_file)),
            ("contributors", {p: ports[p] for p in sorted_ports(set(ports) - set(mode_base))}),
            ("union_formula_agrees", union == set(ports)),
            ("direct_likely_server_ports_redefs", z.redefs_lsp),
            ("register_for_port_singular", [(p, a, c) for p, _, a, c in z.singular
                                            if not p.startswith("scripts/")]),
            ("spicy_ports_not_in_likely_server_ports", spicy_ports_in_test(files)),
            ("problems", z.problems),
            ("count", len(ports)),
        ])
    with open(os.path.join(args.out, "corpus_ports.json"), "w") as f:
        json.dump(corpus, f, indent=1)
    with open(os.path.join(args.out, "corpus_details.json"), "w") as f:
        json.dump(details, f, indent=1)
    print(f"corpus: {len(corpus)} traces")
    for t, d in details.items():
        flags = []
        if not d["scripts_identical"]:
            flags.append(f"scripts: derived={d['derived_scripts']} manifest={d['manifest_scripts']}"
                         + (" (same files)" if d["scripts_same_files"] else " (DIFFERENT FILES)"))
        if d["bare"] != d["manifest_bare"]:
            flags.append("bare flag differs from manifest")
        if d["settings"] != d["manifest_settings"]:
            flags.append(f"settings differ: {d['settings']} vs {d['manifest_settings']}")
        if d["ports_from_test_file"]:
            flags.append(f"test file adds {d['ports_from_test_file']}")
        if not d["union_formula_agrees"]:
            flags.append("per_script union formula DISAGREES")
        for k in ("direct_likely_server_ports_redefs", "register_for_port_singular",
                  "spicy_ports_not_in_likely_server_ports", "problems"):
            if d[k]:
                flags.append(f"{k}={d[k]}")
        base = "default" if not d["bare"] else "bare"
        print(f"  {t}: {d['count']} ({base}{' +' + str(len(d['ports_beyond_mode_base'])) if d['ports_beyond_mode_base'] else ''})"
              + ("; " + "; ".join(flags) if flags else ""))


if __name__ == "__main__":
    try:
        main()
    except ZeekError as e:
        sys.exit(f"error: {e}")
