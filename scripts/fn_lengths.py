#!/usr/bin/env python3
"""List Rust functions by length (lines from `fn` to its closing brace), longest first.

Usage: scripts/fn_lengths.py [--min N] PATH...   (directories are searched for *.rs)

A tiny brace matcher, not a parser: it skips comments, string, raw-string and char literals,
which is enough for rustfmt-formatted code. Used to keep functions under the 200-line limit
(ENGINEERING standards: under ~150)."""
import os
import re
import sys

FN = re.compile(r'^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+"[^"]*"\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)')


def strip(text):
    """The text with comments and literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c == 'r' and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not text[i - 1].isalnum()):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == '\\' else 1
            j += 1
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or text.startswith("'\\u{", i):
            j = text.find("'", i + 1 if text[i + 1] != '\\' else i + 2) + 1
            out.append(' ' * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def functions(path):
    text = strip(open(path, encoding='utf-8').read())
    lines = text.split('\n')
    for no, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        depth, started = 0, False
        for end in range(no, len(lines)):
            for ch in lines[end]:
                if ch == '{':
                    depth += 1
                    started = True
                elif ch == '}':
                    depth -= 1
                elif ch == ';' and not started and depth == 0:
                    break  # a declaration without a body
            else:
                if started and depth == 0:
                    yield m.group(1), no + 1, end - no + 1
                    break
                continue
            break


def main(argv):
    minimum = 0
    if len(argv) > 1 and argv[0] == '--min':
        minimum, argv = int(argv[1]), argv[2:]
    files = []
    for p in argv or ['.']:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = [d for d in dirs if d not in ('target', '.git')]
                files += [os.path.join(root, f) for f in names if f.endswith('.rs')]
        else:
            files.append(p)
    rows = [(n, f, name, line) for f in sorted(files) for name, line, n in functions(f) if n >= minimum]
    for n, f, name, line in sorted(rows, reverse=True):
        print(f'{n:5}  {f}:{line}  {name}')


if __name__ == '__main__':
    main(sys.argv[1:])
