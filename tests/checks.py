"""checks.py: what the Python test scripts (merge_check.py, mpi_check.py)
share: running a command that must succeed, and recording named checks."""
import subprocess

failures = []


def run(argv, ok=True, timeout=120, env=None):
    """argv's CompletedProcess; with ok, a failure stops the script."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if ok and p.returncode != 0:
        raise SystemExit("FAILED (exit %d): %s\n%s%s" % (p.returncode, " ".join(argv), p.stdout, p.stderr))
    return p


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
