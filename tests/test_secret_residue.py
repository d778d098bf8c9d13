"""No secret left behind in freed memory: after an STK push against the sandbox, once the Client is
gone and collected, the process's memory holds neither the Basic credential (base64 of key:secret)
nor the STK Password (base64 of shortcode + passkey + timestamp). libcurl copies both into buffers
of its own; they are wiped because the core gives libcurl an allocator that wipes what it frees.

The push and the scan run in a child process (the sandbox, which must read the secrets, stays in
this one). The child reads its own memory through /proc/self/maps and /proc/self/mem. It never
holds a whole needle: each is passed as two halves, and a hit is the first half followed by the
second, so the scanner cannot find its own copy."""

import base64
import json
import os
import subprocess
import sys
import textwrap

import pytest

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import CA_FILE, DEFAULT_SHORTCODE, Sandbox

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs /proc/self/mem")

CHILD = textwrap.dedent(
	"""
	import gc, json, sys
	from frappe_mpesa import daraja

	job = json.loads(sys.stdin.readline())
	SKIP = ("[vvar]", "[vsyscall]", "[vdso]")


	def regions():
		with open("/proc/self/maps") as maps:
			for line in maps:
				fields = line.split()
				start, end = (int(x, 16) for x in fields[0].split("-"))
				# Regions of 1 GiB and more are reservations (ASan's shadow memory is terabytes),
				# not heap: malloc's arenas and mmapped blocks are far smaller.
				if fields[1][0] == "r" and (len(fields) < 6 or fields[5] not in SKIP) and end - start < 1 << 30:
					yield start, end


	def scan(pairs):
		\"\"\"How many times each (head, tail) pair stands joined in readable memory.\"\"\"
		found = {name: 0 for name in pairs}
		longest = max(len(h) + len(t) for h, t in pairs.values())
		chunk = 1 << 20
		scanned = 0
		with open("/proc/self/mem", "rb", buffering=0) as mem:
			for start, end in list(regions()):
				at = start
				while at < end:
					size = min(chunk + longest, end - at)
					try:
						mem.seek(at)
						data = mem.read(size)
					except OSError:
						break
					scanned += len(data)
					for name, (head, tail) in pairs.items():
						i = data.find(head)
						while i != -1:
							# a hit that starts in the overlap is counted by the next chunk
							if i < chunk and data[i + len(head) : i + len(head) + len(tail)] == tail:
								found[name] += 1
							i = data.find(head, i + 1)
					at += chunk
		return found, scanned


	pairs = {name: (h.encode(), t.encode()) for name, (h, t) in job["needles"].items()}
	# The control needle is joined on purpose and kept alive: the scan must see it.
	control = bytearray(pairs["control"][0]) + bytearray(pairs["control"][1])
	client = daraja.Client(job["key"], job["secret"], base_url=job["base_url"], ca_file=job["ca_file"])
	answer = client.stk_push(**job["stk"])
	del client
	gc.collect()
	found, scanned = scan(pairs)
	print(json.dumps({"answer": answer, "found": found, "scanned": scanned,
	                  "wipes": getattr(daraja, "libcurl_wipes_freed_memory", None)}))
	"""
)


def halves(text):
	return text[: len(text) // 2], text[len(text) // 2 :]


def run_child(sandbox, key, secret, passkey, stk_args):
	basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
	prefix = f"{DEFAULT_SHORTCODE}{passkey}".encode()
	password = base64.b64encode(prefix[: len(prefix) - len(prefix) % 3]).decode()  # timestamp-free
	job = {
		"key": key,
		"secret": secret,
		"base_url": sandbox.url,
		"ca_file": CA_FILE,
		"stk": {**stk_args, "passkey": passkey},
		"needles": {
			"basic": halves(basic),
			"password": halves(password),
			"control": halves("ResidueControl-" + os.urandom(8).hex()),
		},
	}
	child = subprocess.run(
		[sys.executable, "-c", CHILD],
		check=False,
		input=json.dumps(job) + "\n",
		capture_output=True,
		text=True,
		timeout=120,
	)
	assert child.returncode == 0, child.stderr
	return json.loads(child.stdout.splitlines()[-1])


def test_no_credential_or_stk_password_left_in_memory_after_the_client_is_gone(credentials, stk_args):
	key, secret = credentials
	passkey = "ResiduePasskey-" + os.urandom(12).hex()
	with Sandbox(callback_delay=0.05, consumer_key=key, consumer_secret=secret, passkey=passkey) as sandbox:
		result = run_child(sandbox, key, secret, passkey, stk_args)
		pushes = [r for r in sandbox.requests if r.path.endswith("/stkpush/v1/processrequest")]
	# The secrets really went through libcurl, and the scanner really sees the heap.
	assert result["answer"]["ResponseCode"] == "0"
	assert pushes and base64.b64decode(pushes[0].json["Password"]).startswith(
		f"{DEFAULT_SHORTCODE}{passkey}".encode()
	)
	assert result["found"]["control"] >= 1 and result["scanned"] > 1 << 20
	assert result["found"]["basic"] == 0, f"Basic credential left in memory: {result['found']}"
	assert result["found"]["password"] == 0, f"STK Password left in memory: {result['found']}"
	assert result["wipes"] is True


def test_this_process_libcurl_wipes_what_it_frees():
	"""Nothing initialised libcurl before the core in the test process."""
	assert daraja.libcurl_wipes_freed_memory is True


def test_libcurl_initialised_by_another_library_first_is_reported():
	"""libcurl keeps the allocator of whoever initialised it first: the core says so, and carries on."""
	script = textwrap.dedent(
		"""
		import ctypes, ctypes.util, warnings
		curl = ctypes.CDLL(ctypes.util.find_library("curl") or "libcurl.so.4")
		assert curl.curl_global_init(ctypes.c_long(3)) == 0
		with warnings.catch_warnings(record=True) as caught:
			warnings.simplefilter("always")
			from frappe_mpesa import daraja
		print(daraja.libcurl_wipes_freed_memory, [str(w.message) for w in caught if w.category is RuntimeWarning])
		"""
	)
	child = subprocess.run(
		[sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
	)
	assert child.returncode == 0, child.stderr
	wipes, _, warned = child.stdout.strip().partition(" ")
	assert wipes == "False"
	assert "libcurl was initialised before frappe_mpesa._daraja" in warned
