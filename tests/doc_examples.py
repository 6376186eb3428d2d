#!/usr/bin/python3
"""Runs the shell examples of README.md and docs/*.md as written.

The convention (docs/design.md, "Examples in the documentation"):
  * a fenced block opened with ```sh is an example, and runs;
  * a ```sh block right after a line `<!-- not run: REASON -->` does not run
    (the full MNIST set, a long job, a network); the reason must be given;
  * synopses, outputs and file contents go in ```text, ```json, ... blocks
    or indented blocks, which never run.
The blocks of one file run in order in one `sh -e` session, in a scratch
directory where build/ is the build tree, llnc is on PATH, and examples/,
tests/, scripts/, bench/, results/ and data/ are the source tree's, so an
example may use what an earlier one of its file made.

usage: doc_examples.py SOURCE_DIR BUILD_DIR FILE.md...
Exit status 1 names the file, the line of the failing block and its output.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!-- not run: (\S.*\S) -->$")


def blocks(path):
    """(line, kind, text, skip reason or None) of every fenced block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, kind = i + 1, m.group(1)
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        prev = lines[start - 2] if start >= 2 else ""
        skip = NOT_RUN.match(prev.strip())
        if prev.strip().startswith("<!-- not run") and not skip:
            raise SystemExit("%s:%d: a not-run marker needs a reason: %s" % (path, start - 1, prev))
        out.append((start, kind, "\n".join(body), skip.group(1) if skip else None))
        i += 1
    return out


def run_file(src, build, path):
    todo = [(ln, text) for ln, kind, text, skip in blocks(path) if kind == "sh" and not skip]
    if not todo:
        return True
    work = tempfile.mkdtemp(prefix="lln-doc-")
    try:
        os.symlink(build, os.path.join(work, "build"))
        for d in ("examples", "tests", "scripts", "bench", "results", "data", "docs"):
            if os.path.exists(os.path.join(src, d)):
                os.symlink(os.path.join(src, d), os.path.join(work, d))
        env = dict(os.environ, PATH=build + os.pathsep + os.environ.get("PATH", ""))
        for ln, text in todo:
            p = subprocess.run(["sh", "-ec", text], cwd=work, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=600)
            if p.returncode != 0:
                print("%s:%d: the example exits %d:\n%s\n--- output:\n%s" %
                      (path, ln, p.returncode, text, p.stdout.decode(errors="replace")[-3000:]))
                return False
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    src, build = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    ok = True
    for f in sys.argv[3:]:
        ok = run_file(src, build, f) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
