"""`python -m frappe_mpesa credential|certificate`, run as an operator would: in a subprocess, the
password typed at a real terminal (a pty) or piped on stdin."""

import base64
import os
import pathlib
import select
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from test_credential_keys import SAFARICOM, openssl_certificate

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import MPESA_TEST_CERT_DER, MPESA_TEST_CERT_PEM, MPESA_TEST_KEY

PASSWORD = "Typed pass word 7!"
PRIVATE_KEY = serialization.load_pem_private_key(pathlib.Path(MPESA_TEST_KEY).read_bytes(), password=None)


def decrypt(credential):
	return PRIVATE_KEY.decrypt(base64.b64decode(credential, validate=True), padding.PKCS1v15()).decode()


def cli(*args, stdin=subprocess.DEVNULL, input=None):
	return subprocess.run(
		[sys.executable, "-m", "frappe_mpesa", *map(str, args)],
		check=False,
		stdin=None if input is not None else stdin,
		input=input,
		capture_output=True,
		text=True,
		timeout=60,
	)


def assert_refused(result, *words):
	"""Exit status 2, one line on stderr saying why, nothing on stdout, no traceback."""
	assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
	lines = result.stderr.splitlines()
	assert len(lines) == 1, result.stderr
	assert result.stdout == ""
	for word in words:
		assert word in lines[0]


# A new session without a terminal, which then opens the pty and so makes it its controlling
# terminal (getpass reads /dev/tty), before running the command line in-process.
ON_A_TERMINAL = textwrap.dedent(
	"""
	import os, runpy, sys
	os.setsid()
	os.close(os.open(sys.argv[1], os.O_RDWR))
	sys.argv = ["frappe_mpesa", *sys.argv[2:]]
	runpy.run_module("frappe_mpesa", run_name="__main__")
	"""
)


def read_until(fd, marker, seconds=30):
	seen = b""
	deadline = time.monotonic() + seconds
	while marker not in seen and time.monotonic() < deadline:
		if select.select([fd], [], [], 0.1)[0]:
			try:
				chunk = os.read(fd, 4096)
			except OSError:  # EIO: the other side is closed
				break
			if not chunk:
				break
			seen += chunk
	return seen


def on_a_terminal(typed, *args):
	"""Run the command with a pty as its terminal; type `typed` at the prompt.
	Returns (exit status, stdout, stderr, everything the terminal showed)."""
	master, slave = os.openpty()
	child = subprocess.Popen(
		[sys.executable, "-c", ON_A_TERMINAL, os.ttyname(slave), *map(str, args)],
		stdin=subprocess.DEVNULL,
		stdout=subprocess.PIPE,
		stderr=subprocess.PIPE,
		text=True,
	)
	try:
		# The slave stays open here too until the end: with no slave open, reading the master fails.
		shown = read_until(master, b"password: ")
		if typed is not None:
			os.write(master, typed.encode() + b"\r")
		else:
			os.write(master, b"\x04")  # Ctrl-D: end of input
		out, err = child.communicate(timeout=60)
		shown += read_until(master, b"\0", seconds=0.5)
	finally:
		child.kill()
		os.close(master)
		os.close(slave)
	return child.returncode, out, err, shown


def test_credential_reads_the_password_at_the_terminal_without_echo():
	rc, out, err, shown = on_a_terminal(PASSWORD, "credential", MPESA_TEST_CERT_PEM)
	assert rc == 0, err
	assert b"Initiator password: " in shown
	assert PASSWORD.encode() not in shown and PASSWORD not in out + err
	assert decrypt(out.strip()) == PASSWORD


def test_credential_refuses_an_empty_terminal_answer():
	rc, out, err, _ = on_a_terminal(None, "credential", MPESA_TEST_CERT_PEM)
	assert (rc, out) == (2, "")
	assert err.strip().splitlines()[-1].startswith("credential: ")


@pytest.mark.parametrize("certificate", [MPESA_TEST_CERT_PEM, MPESA_TEST_CERT_DER])
def test_credential_from_stdin(certificate):
	result = cli("credential", "--password-stdin", certificate, input=PASSWORD + "\n")
	assert result.returncode == 0, result.stderr
	assert result.stderr == "" and PASSWORD not in result.stdout
	assert len(result.stdout.strip()) == 344 and decrypt(result.stdout.strip()) == PASSWORD


@pytest.mark.parametrize("typed", ["spaces kept  ", "no newline", "windows\r\n"])
def test_only_the_line_end_is_taken_off_a_stdin_password(typed):
	result = cli("credential", "--password-stdin", MPESA_TEST_CERT_PEM, input=typed + "\nsecond line\n")
	assert result.returncode == 0, result.stderr
	assert decrypt(result.stdout.strip()) == typed.removesuffix("\r\n")


def test_credential_for_safaricoms_certificate():
	path = SAFARICOM / "production.cer"
	if not path.exists():
		pytest.skip("Safaricom's production.cer is not beside the checkout")
	result = cli("credential", "--password-stdin", path, input=PASSWORD + "\n")
	assert result.returncode == 0, result.stderr
	assert len(base64.b64decode(result.stdout.strip())) == 256


def test_credential_without_a_terminal_says_to_use_password_stdin():
	assert_refused(cli("credential", MPESA_TEST_CERT_PEM), "--password-stdin")


@pytest.mark.parametrize(
	"stdin, words",
	[
		("", ["no password on standard input"]),
		("\n", ["initiator password:"]),
		("x" * 300 + "\n", ["too long"]),
	],
)
def test_credential_refuses_a_bad_stdin_password(stdin, words):
	assert_refused(cli("credential", "--password-stdin", MPESA_TEST_CERT_PEM, input=stdin), *words)


@pytest.fixture(scope="module")
def weak(tmp_path_factory):
	if shutil.which("openssl") is None:
		pytest.skip("needs the openssl command")
	directory = tmp_path_factory.mktemp("weak")
	certs = {
		"1024": openssl_certificate(directory, "rsa1024", "rsa:1024")[0],
		"e3": openssl_certificate(directory, "e3", "rsa:2048", "-pkeyopt", "rsa_keygen_pubexp:3")[0],
		"garbage": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
	}
	for name, data in certs.items():
		(directory / name).write_bytes(data)
	return directory


@pytest.mark.parametrize("command", ["credential", "certificate"])
@pytest.mark.parametrize(
	"name, words",
	[
		("1024", ["1024-bit RSA key", "2048"]),
		("e3", ["public exponent 3;", "65537"]),
		("garbage", ["is not a PEM or DER X.509 certificate"]),
		("missing", ["No such file or directory"]),
	],
)
def test_bad_certificates_are_one_line_and_exit_2(weak, command, name, words):
	path = weak / name
	args = [command, "--password-stdin", path] if command == "credential" else [command, path]
	result = cli(*args, input=PASSWORD + "\n")
	assert_refused(result, f"{command}: {path}: ", *words)
	assert "Traceback" not in result.stderr and PASSWORD not in result.stderr


def test_a_directory_is_refused(tmp_path):
	assert_refused(cli("certificate", tmp_path), "Is a directory")


def test_certificate_shows_subject_key_fingerprint_and_validity():
	result = cli("certificate", MPESA_TEST_CERT_DER)
	assert result.returncode == 0, result.stderr
	info = daraja.certificate_info(pathlib.Path(MPESA_TEST_CERT_DER).read_bytes())
	shown = dict(line.split(": ", 1) for line in result.stdout.splitlines())
	shown = {name: value.strip() for name, value in shown.items()}
	assert shown["subject"] == info["subject"] and "TEST ONLY" in shown["subject"]
	assert shown["key"] == "RSA 2048-bit"
	assert shown["SHA-256 fingerprint"] == info["fingerprint_sha256"]
	assert shown["not before"] == info["not_before"]
	assert shown["not after"].startswith(info["not_after"])


def test_an_expired_certificate_is_shown_as_expired_and_accepted():
	path = SAFARICOM / "sandbox.cer"
	if not path.exists():
		pytest.skip("Safaricom's sandbox.cer is not beside the checkout")
	result = cli("certificate", path)
	assert result.returncode == 0, result.stderr
	assert "(expired" in result.stdout and "RSA 2048-bit" in result.stdout


def test_usage_names_the_new_commands():
	result = cli("--help")
	assert result.returncode == 0
	assert "credential FILE" in result.stdout and "certificate FILE" in result.stdout
