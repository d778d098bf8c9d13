"""Run leakcheck.py under valgrind's memcheck and judge the extension by it (what `make valgrind` runs).

	python fuzz/memcheck.py [--out build/valgrind] [--rounds N]

Passes when, in every process that ran our code:

- 0 memcheck errors (invalid reads and writes, uses of uninitialised values, bad frees, bad
  syscall arguments) with a frame of _daraja*.so in any of their stacks;
- 0 bytes "definitely lost" in blocks whose allocation stack has such a frame;
- leakcheck.py itself passed (no unexpected exception, no Python objects piling up).

Reports that never touch the extension belong to the interpreter, OpenSSL or libcurl: they are
counted and written to OUT/report.txt, not judged. Two kinds of report are known not to be faults,
and are told apart by what valgrind says about them rather than hidden by a suppression:

- CPython 3.11 leaves the digit of a new zero int uninitialised and reads it (times zero) in
  maybe_small_long (python/cpython#119022, fixed in 3.12). Every use of that int is then reported
  as uninitialised, including ours when we parse a JSON 0. Those reports have the allocation of an
  int (_PyLong_New) as their origin; --track-origins shows it.
- A child forked from a process with clients abandons the parent's libcurl handles and share
  without closing them, on purpose: closing would send a TLS close_notify on the parent's
  connections (transport.c, acquire_handle). In a forked child, blocks allocated under ABANDONED
  are that and nothing else.

OUT holds memcheck.PID.xml, one per process (leakcheck.py forks, and starts the sandbox, which
leaves valgrind when it execs), run.log with leakcheck.py's output and report.txt.
"""

import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUPPRESSIONS = HERE / "valgrind.supp"
OURS = "_daraja"
ERROR_EXIT = 99
LEAKS = ("Leak_DefinitelyLost", "Leak_IndirectlyLost", "Leak_PossiblyLost", "Leak_StillReachable")
UNINITIALISED = ("UninitValue", "UninitCondition", "SyscallParam")
ZERO_INT_ORIGIN = "_PyLong_New"
ABANDONED = ("new_handle", "new_share")


def stacks(error):
	"""The frames of each stack of an error: where it happened, then e.g. where the block came from."""
	return [
		[
			{name: (frame.findtext(name) or "") for name in ("obj", "fn", "file", "line")}
			for frame in stack.iter("frame")
		]
		for stack in error.findall("stack")
	]


def describe(frame):
	where = f"{frame['file']}:{frame['line']}" if frame["file"] else Path(frame["obj"]).name
	return f"{frame['fn'] or '???'} ({where})"


def classify(kind, error_stacks, forked_child):
	"""'ours', or why a report is not the extension's fault."""
	if kind in UNINITIALISED and len(error_stacks) > 1:
		origin = [f["fn"] for f in error_stacks[-1][:2]]
		if ZERO_INT_ORIGIN in origin:
			return "cpython-zero-int"
	frames = [f for stack in error_stacks for f in stack]
	if not any(OURS in f["obj"] for f in frames):
		return "elsewhere"
	if kind in LEAKS and forked_child and any(f["fn"] in ABANDONED for f in error_stacks[0]):
		return "abandoned-after-fork"
	return "ours"


def read_process(path, main_pid):
	"""A dict of one process's reports; None for a process that left valgrind by exec."""
	try:
		root = ET.parse(path).getroot()
	except ET.ParseError:
		pid = path.name.split(".")[1]
		if pid == str(main_pid):
			sys.exit(f"valgrind: {path} is incomplete: the process under test did not end normally")
		return None
	forked_child = root.findtext("pid") != str(main_pid)
	reports = []
	for error in root.iter("error"):
		kind = error.findtext("kind")
		what = error.findtext("what") or error.findtext("xwhat/text") or ""
		error_stacks = stacks(error)
		lines = [f"{kind}: {what}"]
		for i, stack in enumerate(error_stacks):
			if i:
				lines.append("  from:")
			lines += [f"    {describe(f)}" for f in stack[:24]]
		reports.append(
			{
				"kind": kind,
				"bytes": int(error.findtext("xwhat/leakedbytes") or 0),
				"class": classify(kind, error_stacks, forked_child),
				"forked": forked_child,
				"text": "\n".join(lines),
			}
		)
	suppressed = sum(int(pair.findtext("count") or 0) for pair in root.iter("pair"))
	return {"pid": root.findtext("pid"), "forked": forked_child, "reports": reports, "suppressed": suppressed}


def run(args):
	"""Run leakcheck.py under memcheck; (valgrind's pid, exit status, leakcheck's verdict, seconds)."""
	command = [
		"valgrind",
		"--tool=memcheck",
		"--leak-check=full",
		"--show-leak-kinds=definite,indirect",
		"--errors-for-leak-kinds=definite",
		f"--error-exitcode={ERROR_EXIT}",
		"--error-limit=no",
		"--track-origins=yes",
		"--num-callers=40",
		f"--suppressions={SUPPRESSIONS}",
		"--xml=yes",
		f"--xml-file={args.out.resolve()}/memcheck.%p.xml",
		sys.executable,
		str(HERE / "leakcheck.py"),
		f"--rounds={args.rounds}",
	]
	env = dict(os.environ, PYTHONMALLOC="malloc")  # every Python object its own malloc block
	print("valgrind:", " ".join(command), flush=True)
	started = time.monotonic()
	verdict = None
	with open(args.out / "run.log", "w") as log:
		process = subprocess.Popen(
			command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
		)
		for line in process.stdout:
			log.write(line)
			if line.startswith(("leakcheck: PASSED", "leakcheck: FAILED")):
				verdict = line.split()[1].rstrip(":")
			if line.startswith("leakcheck:"):
				print(line, end="", flush=True)
		rc = process.wait()
	return process.pid, rc, verdict, time.monotonic() - started


def main(argv=None):
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--out", type=Path, default=Path("build/valgrind"))
	parser.add_argument(
		"--rounds", type=int, default=5, help="leakcheck.py rounds after the warm-up (default 5)"
	)
	args = parser.parse_args(argv)
	args.out.mkdir(parents=True, exist_ok=True)
	for old in args.out.glob("memcheck.*.xml"):
		old.unlink()
	pid, rc, verdict, elapsed = run(args)

	if not (args.out / f"memcheck.{pid}.xml").exists():
		print(f"valgrind: FAILED: no memcheck output (exit status {rc}); see {args.out / 'run.log'}")
		return 1
	processes = [p for p in (read_process(f, pid) for f in sorted(args.out.glob("memcheck.*.xml"))) if p]
	reports = [r for p in processes for r in p["reports"]]
	ours = [r for r in reports if r["class"] == "ours"]
	ours_errors = [r for r in ours if r["kind"] not in LEAKS]
	classes = Counter(r["class"] for r in reports)

	def lost(cls, forked, kind="Leak_DefinitelyLost"):
		return sum(
			r["bytes"] for r in reports if r["class"] == cls and r["forked"] == forked and r["kind"] == kind
		)

	# A forked child starts with its parent's heap: what the parent lost before the fork shows again there.
	definite, definite_forked = lost("ours", False), lost("ours", True)
	indirect = lost("ours", False, "Leak_IndirectlyLost") + lost("ours", True, "Leak_IndirectlyLost")

	with open(args.out / "report.txt", "w") as report:
		report.writelines(
			f"[{r['class']}{' in a forked child' if r['forked'] else ''}] {r['text']}\n\n"
			for r in sorted(reports, key=lambda r: r["class"] != "ours")
		)
	shown = set()
	for r in ours:  # each report once, however many processes have it
		stack = r["text"].split("\n", 1)[-1]
		if stack not in shown:
			shown.add(stack)
			print(r["text"])
	forks = sum(p["forked"] for p in processes)
	print(
		f"valgrind: {elapsed:.0f} s, 1 process + {forks} forked; extension: {len(ours_errors)} errors, "
		f"{definite} bytes definitely lost ({definite_forked} more in the forked children), "
		f"{indirect} bytes indirectly lost"
	)
	print(
		f"valgrind: not the extension's: {classes['cpython-zero-int']} uses of CPython 3.11's uninitialised "
		f"zero int; {lost('abandoned-after-fork', True)} bytes of connections abandoned in forked children; "
		f"{classes['elsewhere']} reports without an extension frame, with {lost('elsewhere', False)} bytes "
		f"definitely lost in the process under test and {lost('elsewhere', True)} in forked children; "
		f"{sum(p['suppressed'] for p in processes)} suppressed; all in {args.out / 'report.txt'}"
	)
	# valgrind's exit status is ERROR_EXIT for any report, even one that is not ours.
	leakcheck_failed = verdict != "PASSED" or rc not in (0, ERROR_EXIT)
	if ours_errors or definite or definite_forked or leakcheck_failed:
		why = []
		if ours_errors:
			why.append(f"{len(ours_errors)} memcheck errors in the extension")
		if definite or definite_forked:
			why.append(
				f"{definite} (+{definite_forked} in forked children) bytes definitely lost in the extension"
			)
		if leakcheck_failed:
			why.append(
				f"leakcheck.py {verdict or 'did not finish'} (exit status {rc}, see {args.out / 'run.log'})"
			)
		print(f"valgrind: FAILED: {'; '.join(why)}")
		return 1
	print("valgrind: PASSED: 0 errors and 0 bytes definitely lost in the extension")
	return 0


if __name__ == "__main__":
	sys.exit(main())
