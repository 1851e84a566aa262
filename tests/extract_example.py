#!/usr/bin/env python3
"""extract_example.py — writes the first ```c fenced block of a Markdown file (the README's
API example) to a C file, so the build can compile and run it as a test.

usage: extract_example.py README.md out.c
"""
import sys


def first_c_block(lines):
    """Returns (first line number of the code, code lines) of the first ```c block."""
    start = None
    for number, line in enumerate(lines, 1):
        text = line.rstrip()
        if start is None:
            if text == "```c":
                start = number + 1
                body = []
        elif text == "```":
            return start, body
        else:
            body.append(line)
    if start is not None:
        raise ValueError(f"the ```c block opened on line {start - 1} is never closed")
    raise ValueError("no ```c fenced block found (a line that is exactly ```c opens one)")


def main(argv):
    if len(argv) != 3:
        print("usage: extract_example.py README.md out.c", file=sys.stderr)
        return 2
    source, target = argv[1], argv[2]
    try:
        with open(source, encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
        start, body = first_c_block(lines)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"extract_example.py: {source}: {e}", file=sys.stderr)
        return 1
    if not "".join(body).strip():
        print(f"extract_example.py: {source}: the ```c block on line {start - 1} is empty",
              file=sys.stderr)
        return 1
    # #line makes compiler messages point at the README, where the code really lives.
    escaped = source.replace("\\", "\\\\").replace('"', '\\"')
    text = f'#line {start} "{escaped}"\n' + "".join(
        line if line.endswith("\n") else line + "\n" for line in body)
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        print(f"extract_example.py: {target}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
