"""Transport: TLS, timeouts, size caps, malformed answers, no resends, GIL and fork."""

import os
import threading
import time

import pytest
from conftest import OAUTH, STK_PUSH, STK_QUERY

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import CA_FILE, DEFAULT_PASSKEY, DEFAULT_SHORTCODE, UNTRUSTED_CA_FILE


def query(client, checkout_id="ws_CO_unknown"):
	return client.stk_query(shortcode=DEFAULT_SHORTCODE, passkey=DEFAULT_PASSKEY, checkout_request_id=checkout_id)


def test_wrong_ca_is_a_tls_error(make_client, sandbox):
	client = make_client(ca_file=UNTRUSTED_CA_FILE)
	with pytest.raises(daraja.TLSError) as caught:
		client.access_token()
	assert isinstance(caught.value, daraja.TransportError)
	assert caught.value.sent is False
	assert sandbox.count() == 0


def test_system_store_does_not_trust_the_sandbox(make_client):
	with pytest.raises(daraja.TLSError):
		make_client(ca_file=None).access_token()


def test_http_base_url_is_refused():
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.Client("k", "s", base_url="http://127.0.0.1:8080")
	assert caught.value.field == "base_url"


def test_slow_server_times_out_within_timeout_plus_one_second(make_client, sandbox):
	client = make_client(timeout=1.0, connect_timeout=1.0)
	sandbox.fault(OAUTH, "delay", seconds=5)
	started = time.monotonic()
	with pytest.raises(daraja.TimeoutError) as caught:
		client.access_token()
	elapsed = time.monotonic() - started
	assert 0.9 < elapsed < 2.0
	assert caught.value.sent is True


def test_oversize_body_is_refused(client, sandbox):
	client.access_token()
	sandbox.fault(STK_QUERY, "oversize", bytes=2 * 1024 * 1024)
	with pytest.raises(daraja.TransportError, match="larger than 1048576 bytes"):
		query(client)


def test_oversize_body_without_length_is_refused_while_streaming(client, sandbox):
	client.access_token()
	sandbox.fault(STK_QUERY, "oversize", bytes=2 * 1024 * 1024, chunked=True)
	with pytest.raises(daraja.TransportError, match="larger than 1048576 bytes"):
		query(client)


def test_malformed_json_is_an_api_error(client, sandbox):
	sandbox.fault(OAUTH, "malformed", times=1)
	with pytest.raises(daraja.AuthError):
		client.access_token()
	client.access_token()
	sandbox.fault(STK_QUERY, "malformed", times=1)
	with pytest.raises(daraja.APIError, match="malformed JSON") as caught:
		query(client)
	assert caught.value.http_status == 200


def test_server_error_is_an_api_error_with_the_envelope(client, sandbox):
	client.access_token()
	sandbox.fault(STK_QUERY, "status", status=503)
	with pytest.raises(daraja.APIError) as caught:
		query(client)
	assert caught.value.http_status == 503
	assert caught.value.error_code.startswith("503")


def test_reset_during_stk_push_is_not_resent(client, sandbox, stk_args):
	# Warm the connection first: libcurl resends by itself on a reused connection
	# that dies, unless the body cannot be rewound.
	client.stk_push(**stk_args)
	sandbox.fault(STK_PUSH, "reset", times=1)
	with pytest.raises(daraja.TransportError, match="outcome is unknown") as caught:
		client.stk_push(**stk_args)
	assert caught.value.sent is True
	assert sandbox.count(STK_PUSH) == 2


def test_reset_on_a_fresh_connection_is_not_resent(make_client, sandbox, stk_args):
	client = make_client()
	client.access_token()
	sandbox.fault(STK_PUSH, "reset", times=1)
	with pytest.raises(daraja.TransportError):
		client.stk_push(**stk_args)
	assert sandbox.count(STK_PUSH) == 1


def test_connection_refused_says_nothing_was_sent(make_client):
	client = make_client(base_url="https://127.0.0.1:9")
	with pytest.raises(daraja.TransportError) as caught:
		client.access_token()
	assert caught.value.sent is False


def test_connections_are_reused(client, sandbox):
	for _ in range(5):
		client.access_token()
		with pytest.raises(daraja.APIError):
			query(client)
	assert len({r.connection for r in sandbox.requests}) == 1


def test_gil_is_released_during_transfers(client, sandbox):
	client.access_token()
	sandbox.fault(STK_QUERY, "delay", seconds=0.2)
	errors = []

	def call():
		try:
			query(client)
		except daraja.APIError as e:
			errors.append(e.error_code)

	threads = [threading.Thread(target=call) for _ in range(8)]
	started = time.monotonic()
	for t in threads:
		t.start()
	for t in threads:
		t.join()
	elapsed = time.monotonic() - started
	assert errors == ["400.002.02"] * 8
	assert elapsed < 0.6, f"8 concurrent 200 ms calls took {elapsed:.2f} s"


def test_child_after_fork_uses_its_own_connection(client, sandbox):
	client.access_token()
	with pytest.raises(daraja.APIError):
		query(client)
	parent_connection = sandbox.requests[-1].connection
	read_end, write_end = os.pipe()
	pid = os.fork()
	if pid == 0:  # the child: report and leave without running pytest's teardown
		status = b"fail"
		try:
			try:
				query(client)
			except daraja.APIError as e:
				status = e.error_code.encode()
		finally:
			os.write(write_end, status)
			os._exit(0)
	os.close(write_end)
	for _ in range(5):  # the parent keeps working meanwhile
		with pytest.raises(daraja.APIError):
			query(client)
	os.waitpid(pid, 0)
	assert os.read(read_end, 64) == b"400.002.02"
	os.close(read_end)
	connections = {r.connection for r in sandbox.requests if r.path == STK_QUERY}
	assert parent_connection in connections and len(connections) == 2


def test_fork_while_other_threads_hold_locks(client, sandbox):
	"""Fork from a thread while others are mid-call: the child must not deadlock."""
	client.access_token()
	sandbox.fault(STK_QUERY, "delay", seconds=0.3, times=4)
	threads = [threading.Thread(target=lambda: pytest.raises(daraja.APIError, query, client)) for _ in range(4)]
	for t in threads:
		t.start()
	time.sleep(0.1)
	pid = os.fork()
	if pid == 0:
		code = 1
		try:
			query(client)
		except daraja.APIError:
			code = 0
		finally:
			os._exit(code)
	for t in threads:
		t.join()
	_, status = os.waitpid(pid, 0)
	assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# -- retries: read-only calls up to three times, money-moving calls never once sent --


def test_read_only_call_is_retried_after_5xx_up_to_three_times(client, sandbox):
	client.access_token()
	sandbox.fault(STK_QUERY, "status", status=503)
	with pytest.raises(daraja.APIError) as caught:
		query(client)
	assert caught.value.http_status == 503
	assert sandbox.count(STK_QUERY) == 3


def test_read_only_call_recovers_after_one_5xx(client, sandbox):
	client.access_token()
	sandbox.fault(STK_QUERY, "status", status=502, times=1)
	with pytest.raises(daraja.APIError) as caught:
		query(client)
	assert caught.value.error_code == "400.002.02"  # the real answer, on the second try
	assert sandbox.count(STK_QUERY) == 2


def test_read_only_call_is_retried_after_a_reset(client, sandbox):
	client.access_token()
	sandbox.fault(STK_QUERY, "reset", times=2)
	with pytest.raises(daraja.APIError) as caught:
		query(client)
	assert caught.value.error_code == "400.002.02"
	assert sandbox.count(STK_QUERY) == 3


def test_pending_answer_is_final_not_retried(client, sandbox, stk_args):
	sandbox.callback_delay = 5.0
	checkout = client.stk_push(**stk_args)["CheckoutRequestID"]
	with pytest.raises(daraja.APIError, match="being processed"):
		query(client, checkout)
	assert sandbox.count(STK_QUERY) == 1


def test_money_moving_call_is_not_retried_after_5xx(client, sandbox, stk_args):
	client.access_token()
	sandbox.fault(STK_PUSH, "status", status=503)
	with pytest.raises(daraja.APIError):
		client.stk_push(**stk_args)
	assert sandbox.count(STK_PUSH) == 1


def test_money_moving_call_is_not_retried_after_resets(client, sandbox, stk_args):
	client.access_token()
	sandbox.fault(STK_PUSH, "reset")
	for _ in range(3):
		with pytest.raises(daraja.TransportError) as caught:
			client.stk_push(**stk_args)
		assert caught.value.sent is True
	assert sandbox.count(STK_PUSH) == 3  # one per call


def test_retries_stay_within_the_timeout(make_client, sandbox):
	client = make_client(timeout=1.0, connect_timeout=0.5)
	client.access_token()
	sandbox.fault(STK_QUERY, "delay", seconds=3)
	started = time.monotonic()
	with pytest.raises(daraja.TimeoutError) as caught:
		query(client)
	assert time.monotonic() - started < 2.0
	assert caught.value.sent is True
	assert sandbox.count(STK_QUERY) == 1  # no time was left for a second try


def test_money_moving_call_is_retried_when_nothing_was_sent(make_client, stk_args):
	"""Connection refused three times: safe to retry, and still a clear error."""
	client = make_client(base_url="https://127.0.0.1:9", timeout=3.0)
	started = time.monotonic()
	with pytest.raises(daraja.TransportError) as caught:
		client.stk_push(**stk_args)
	assert caught.value.sent is False
	assert "outcome is unknown" not in str(caught.value)
	assert time.monotonic() - started < 3.0


# -- CA stores: loaded once per CA file and shared; a changed or bad file is read again --


def ca_copy(path, source, size=None):
	"""Write source's certificates to path (padded with blank lines to size bytes)."""
	data = open(source, "rb").read()
	if size is not None:
		data += b"\n" * (size - len(data))
	with open(path, "r+b" if os.path.exists(path) else "wb") as f:  # in place: the inode stays
		f.write(data)
		f.truncate()


def test_clients_sharing_a_ca_file_each_verify_tls(make_client, sandbox, tmp_path):
	path = tmp_path / "ca.pem"
	ca_copy(path, CA_FILE)
	first, second = make_client(ca_file=str(path)), make_client(ca_file=str(path))
	first.access_token()
	for client in (first, second):  # each Transport makes its own TLS connection
		with pytest.raises(daraja.APIError):
			query(client)
	del first, second
	third = make_client(ca_file=str(path))  # the store outlives the Clients that made it
	with pytest.raises(daraja.APIError):
		query(third)
	assert len({r.connection for r in sandbox.requests}) == 3


def verifies(client):
	"""Does client trust the sandbox? A new connection each time: a Client's first request."""
	try:
		query(client)
	except daraja.TLSError:
		return False
	except daraja.APIError:
		return True
	raise AssertionError("the sandbox accepted an unknown CheckoutRequestID")


def test_a_replaced_ca_file_is_read_again(make_client, tmp_path):
	path, other = tmp_path / "ca.pem", tmp_path / "new.pem"
	ca_copy(path, CA_FILE)
	assert verifies(make_client(ca_file=str(path)))
	ca_copy(other, UNTRUSTED_CA_FILE)
	os.replace(other, path)  # a new inode
	assert not verifies(make_client(ca_file=str(path)))
	ca_copy(other, CA_FILE)
	os.replace(other, path)
	assert verifies(make_client(ca_file=str(path)))


def test_a_ca_file_rewritten_in_place_is_read_again(make_client, tmp_path):
	"""Same inode, same size, even the old mtime put back (as `cp -p` does): still read again."""
	path = tmp_path / "ca.pem"
	size = max(os.path.getsize(CA_FILE), os.path.getsize(UNTRUSTED_CA_FILE))
	ca_copy(path, UNTRUSTED_CA_FILE, size)
	assert not verifies(make_client(ca_file=str(path)))
	before = os.stat(path)
	ca_copy(path, CA_FILE, size)
	os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
	after = os.stat(path)
	assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
	assert verifies(make_client(ca_file=str(path)))


def test_a_bad_ca_file_fails_every_time_and_a_fixed_one_works(make_client, tmp_path):
	path = tmp_path / "ca.pem"
	path.write_bytes(b"not a certificate\n")
	for _ in range(2):
		with pytest.raises(daraja.ValidationError) as caught:
			make_client(ca_file=str(path))
		assert caught.value.field == "ca_file"
	with pytest.raises(daraja.ValidationError):
		make_client(ca_file=str(tmp_path / "missing.pem"))
	ca_copy(tmp_path / "fixed.pem", CA_FILE)
	os.replace(tmp_path / "fixed.pem", path)
	assert verifies(make_client(ca_file=str(path)))


def test_the_system_store_follows_ssl_cert_file(make_client, tmp_path, monkeypatch):
	trusted, untrusted = tmp_path / "trusted.pem", tmp_path / "untrusted.pem"
	ca_copy(trusted, CA_FILE)
	ca_copy(untrusted, UNTRUSTED_CA_FILE)
	monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
	monkeypatch.setenv("SSL_CERT_FILE", str(trusted))
	assert verifies(make_client(ca_file=None))
	monkeypatch.setenv("SSL_CERT_FILE", str(untrusted))
	assert not verifies(make_client(ca_file=None))
	monkeypatch.setenv("SSL_CERT_FILE", str(trusted))
	assert verifies(make_client(ca_file=None))


def test_a_forked_child_makes_clients_with_the_shared_store(make_client, sandbox):
	make_client().access_token()
	pid = os.fork()
	if pid == 0:
		code = 1
		try:
			try:
				query(make_client())
			except daraja.APIError as e:
				code = 0 if e.error_code == "400.002.02" else 2
		finally:
			os._exit(code)
	_, status = os.waitpid(pid, 0)
	assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# -- the handle pool follows concurrency --


def test_the_pool_keeps_as_many_connections_as_threads_used_at_once(client, sandbox):
	"""32 threads at once, twice: the second round reuses the first round's 32 connections."""
	client.access_token()
	sandbox.fault(STK_QUERY, "delay", seconds=0.3)
	threads = 32
	for _ in range(2):
		barrier = threading.Barrier(threads)

		def call():
			barrier.wait()
			with pytest.raises(daraja.APIError):
				query(client)

		pool = [threading.Thread(target=call) for _ in range(threads)]
		for t in pool:
			t.start()
		for t in pool:
			t.join()
	assert sandbox.count(STK_QUERY) == 2 * threads
	assert len({r.connection for r in sandbox.requests if r.path == STK_QUERY}) <= threads
