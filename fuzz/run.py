"""Run the fuzz harnesses one after the other for a bounded time and judge them (what `make fuzz` runs).

	python fuzz/run.py --tree build/fuzz/tree --out build/fuzz [--seconds 600] [HARNESS...]

--tree is a copy of the source tree whose extension was built with clang and
-fsanitize=address,fuzzer-no-link (the Makefile does that). Each harness runs under libFuzzer
(atheris) with AddressSanitizer and libFuzzer's leak check, seeded by make_corpus.py; the corpus it
grows is kept in OUT/corpus/HARNESS for the next run, its output in OUT/HARNESS.log, and a crash,
leak, hang or out-of-memory input in OUT/artifacts/HARNESS/. Exit status 1 if any harness found
something or did not run.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = {
	"callbacks": HERE / "fuzz_callbacks.py",
	"certificates": HERE / "fuzz_certificates.py",
}
# What libFuzzer, ASan and atheris print when an input is a finding.
FINDING = re.compile(
	r"==\d+==ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|"
	r"=== Uncaught Python exception: ===|ERROR: libFuzzer: (timeout|out-of-memory|deadly signal)"
)
ARTIFACT = re.compile(r"Test unit written to (\S+)")
STATS = re.compile(
	r"^#(\d+)\s+(DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.MULTILINE
)
FINAL = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)
COUNTERS = re.compile(r"Loaded \d+ modules\s+\((\d+) inline 8-bit counters\)")


def preload():
	"""ASan with libFuzzer inside, as atheris ships it, to load before the interpreter starts."""
	import atheris

	path = Path(atheris.path()) / "asan_with_fuzzer.so"
	if not path.exists():
		sys.exit(f"fuzz: {path} is missing: atheris was installed without its sanitizer runtimes")
	return str(path)


def environment(tree):
	env = dict(os.environ)
	env.update(
		LD_PRELOAD=preload(),
		PYTHONPATH=str(tree.resolve()),
		# Every Python object its own malloc block, so ASan and LeakSanitizer see them.
		PYTHONMALLOC="malloc",
		# Leaks are checked by libFuzzer after each input that allocated more than it freed; the
		# interpreter's own allocations at exit are not ours.
		ASAN_OPTIONS="detect_leaks=1:leak_check_at_exit=0:abort_on_error=0:symbolize=1",
	)
	return env


def check_import(tree, env):
	"""Make sure the harnesses will import the fuzzing build of the extension, not another one."""
	code = "import frappe_mpesa._daraja as m; print(m.__file__)"
	out = subprocess.run(
		[sys.executable, "-c", code], check=False, env=env, cwd=HERE, capture_output=True, text=True
	)
	path = Path(out.stdout.strip() or "?")
	if out.returncode != 0 or tree.resolve() not in path.resolve().parents:
		sys.exit(f"fuzz: the extension under test is not {tree}'s:\n{out.stdout}{out.stderr}")
	print(f"fuzz: extension under test: {path}")


def fuzz(name, seconds, out, seeds, env):
	"""Run one harness; a dict of what it did and found."""
	corpus = out / "corpus" / name
	artifacts = out / "artifacts" / name
	corpus.mkdir(parents=True, exist_ok=True)
	artifacts.mkdir(parents=True, exist_ok=True)
	log = out / f"{name}.log"
	command = [
		sys.executable,
		str(HARNESSES[name]),
		f"-max_total_time={seconds}",
		"-timeout=5",
		"-rss_limit_mb=2048",
		"-print_final_stats=1",
		f"-artifact_prefix={artifacts}/",
		str(corpus),
		str(seeds / name),
	]
	if (seeds / f"{name}.dict").exists():
		command.insert(2, f"-dict={seeds / name}.dict")
	print(f"fuzz: {name}: {seconds} s, log {log}", flush=True)
	started = time.monotonic()
	with open(log, "w") as output:
		try:
			run = subprocess.run(
				command, check=False, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=seconds + 300
			)
			rc = run.returncode
		except subprocess.TimeoutExpired:
			rc = "killed after no answer for 5 minutes past its time"
	elapsed = time.monotonic() - started
	text = log.read_text(errors="replace")
	stats = STATS.findall(text)
	final = dict(FINAL.findall(text))
	counters = COUNTERS.search(text)
	first = FINDING.search(text)
	return {
		"name": name,
		"rc": rc,
		"seconds": elapsed,
		"runs": int(final.get("number_of_executed_units", stats[-1][0] if stats else 0)),
		"cov": int(stats[-1][2]) if stats else "-",
		"edges": int(counters.group(1)) if counters else "?",
		"ft": int(stats[-1][3]) if stats else "-",
		"corpus": int(stats[-1][4]) if stats else "-",
		"new": int(final.get("new_units_added", 0)),
		"peak_rss_mb": int(final.get("peak_rss_mb", 0)),
		"findings": [m.group(0) for m in FINDING.finditer(text)],
		"excerpt": text[first.start() :].splitlines()[:40] if first else [],
		"artifacts": ARTIFACT.findall(text) or sorted(str(p) for p in artifacts.iterdir()),
		"log": log,
	}


def report(result, tree):
	r = result
	rate = r["runs"] / r["seconds"] if r["seconds"] else 0
	print(
		f"fuzz: {r['name']}: {r['runs']} runs in {r['seconds']:.0f} s ({rate:.0f}/s), "
		f"cov: {r['cov']} (of {r['edges']} edges in the extension) ft: {r['ft']}, "
		f"corpus {r['corpus']} ({r['new']} new), "
		f"peak RSS {r['peak_rss_mb']} MB, findings {len(r['findings'])}"
	)
	if r["findings"] or r["rc"] != 0:
		found = ", ".join(sorted(set(r["findings"]))) or "see the log"
		print(f"fuzz: {r['name']}: exit status {r['rc']}; {found}")
		for line in r["excerpt"]:
			print(f"  | {line}")
		for artifact in r["artifacts"]:
			print(f"  reproducer: {artifact}")
			print(
				f"  replay: LD_PRELOAD={preload()} PYTHONPATH={tree.resolve()} PYTHONMALLOC=malloc "
				f"{sys.executable} {HARNESSES[r['name']]} {artifact}"
			)
		print(f"  log: {r['log']}")


def main(argv=None):
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--tree", type=Path, required=True, help="copy of the tree with the fuzzing build")
	parser.add_argument("--out", type=Path, required=True, help="where corpora, logs and reproducers go")
	parser.add_argument("--seconds", type=int, default=600, help="per harness (default 600)")
	parser.add_argument(
		"harnesses", nargs="*", metavar="HARNESS", help=f"any of {', '.join(HARNESSES)} (all)"
	)
	args = parser.parse_args(argv)
	names = args.harnesses or list(HARNESSES)
	unknown = set(names) - set(HARNESSES)
	if unknown:
		parser.error(f"unknown harness {', '.join(sorted(unknown))}")

	seeds = args.out / "seeds"
	shutil.rmtree(seeds, ignore_errors=True)
	subprocess.run([sys.executable, str(HERE / "make_corpus.py"), str(seeds)], check=True)
	env = environment(args.tree)
	check_import(args.tree, env)

	results = [fuzz(name, args.seconds, args.out, seeds, env) for name in names]
	for result in results:
		report(result, args.tree)
	failed = [r["name"] for r in results if r["findings"] or r["rc"] != 0 or not r["runs"]]
	if failed:
		print(f"fuzz: FAILED: {', '.join(failed)} (reproducers under {args.out / 'artifacts'})")
		return 1
	runs = sum(r["runs"] for r in results)
	print(f"fuzz: PASSED: {len(results)} harnesses, {runs} runs, 0 crashes, 0 leaks, 0 hangs")
	return 0


if __name__ == "__main__":
	sys.exit(main())
