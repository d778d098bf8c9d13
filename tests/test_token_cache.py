"""The OAuth token cache: reuse, single flight, renewal, invalid-token retry, token_store."""

import threading
import time

import pytest
from conftest import OAUTH, STK_QUERY

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import DEFAULT_PASSKEY, DEFAULT_SHORTCODE


def query(client):
	with pytest.raises(daraja.APIError) as caught:  # an unknown id: a cheap authenticated call
		client.stk_query(shortcode=DEFAULT_SHORTCODE, passkey=DEFAULT_PASSKEY, checkout_request_id="ws_CO_x")
	return caught.value


class MemoryStore:
	"""A token_store as the Frappe layer gives one, kept in memory."""

	def __init__(self, token=None, expires_at=0.0):
		self.value = (token, expires_at) if token else None
		self.loads = 0
		self.stores = []

	def load(self):
		self.loads += 1
		return self.value

	def store(self, token, expires_at):
		self.stores.append((token, expires_at))
		self.value = (token, expires_at)


def test_token_is_reused_across_calls_and_clients(make_client, sandbox):
	first, second = make_client(), make_client()
	token = first.access_token()
	assert second.access_token() == token
	for _ in range(3):
		assert query(first).error_code == "400.002.02"
	assert sandbox.count(OAUTH) == 1


def test_bearer_header_carries_the_token(client, sandbox):
	token = client.access_token()
	query(client)
	assert sandbox.requests[-1].header("Authorization") == f"Bearer {token}"


def test_a_different_secret_does_not_share_the_token(make_client, sandbox):
	make_client().access_token()
	with pytest.raises(daraja.AuthError) as caught:
		make_client(consumer_secret="wrong").access_token()
	assert caught.value.http_status == 400
	assert sandbox.count(OAUTH) == 2


def test_64_threads_on_a_cold_cache_make_one_token_request(client, sandbox):
	sandbox.fault(OAUTH, "delay", seconds=0.2, times=1)
	barrier = threading.Barrier(64)
	tokens, errors = [], []

	def call():
		barrier.wait()
		try:
			tokens.append(client.access_token())
		except Exception as e:  # noqa: BLE001 - collected and asserted below
			errors.append(e)

	threads = [threading.Thread(target=call) for _ in range(64)]
	for t in threads:
		t.start()
	for t in threads:
		t.join()
	assert errors == []
	assert len(tokens) == 64 and len(set(tokens)) == 1
	assert sandbox.count(OAUTH) == 1


def test_invalid_token_answer_renews_once_and_retries(client, sandbox):
	old = client.access_token()
	sandbox.expire_tokens()
	assert query(client).error_code == "400.002.02"  # the retry got through to the real answer
	assert sandbox.count(OAUTH) == 2
	assert client.access_token() != old
	assert sandbox.count(STK_QUERY) == 2


def test_invalid_token_twice_gives_up_after_one_retry(client, sandbox):
	client.access_token()
	sandbox.fault(STK_QUERY, "invalid_token")
	error = query(client)
	assert error.error_code == "404.001.03" and error.http_status == 404
	assert sandbox.count(OAUTH) == 2
	assert sandbox.count(STK_QUERY) == 2


def test_invalid_token_under_concurrency_renews_once(client, sandbox):
	client.access_token()
	sandbox.expire_tokens()
	threads = [threading.Thread(target=query, args=(client,)) for _ in range(16)]
	for t in threads:
		t.start()
	for t in threads:
		t.join()
	assert sandbox.count(OAUTH) == 2


@pytest.mark.parametrize("expires_in", [3599, "3599", 3599.0])
def test_expires_in_as_string_or_number(client, sandbox, expires_in):
	sandbox.fault(OAUTH, "token_expires_in", value=expires_in, times=1)
	client.access_token()
	client.access_token()
	assert sandbox.count(OAUTH) == 1


def test_token_inside_the_margin_is_renewed(client, sandbox):
	sandbox.fault(OAUTH, "token_expires_in", value="61", times=1)
	first = client.access_token()
	time.sleep(1.1)  # now less than 60 s from expiry
	assert client.access_token() != first
	assert sandbox.count(OAUTH) == 2


@pytest.mark.parametrize("expires_in", ["soon", "", -5, None, [1]])
def test_unusable_expires_in_is_an_auth_error(client, sandbox, expires_in):
	sandbox.fault(OAUTH, "token_expires_in", value=expires_in, times=1)
	with pytest.raises(daraja.AuthError, match="expires_in"):
		client.access_token()


def test_bad_credentials_are_an_auth_error(make_client):
	with pytest.raises(daraja.AuthError) as caught:
		make_client(consumer_key="nobody").access_token()
	assert caught.value.http_status == 400


def test_failed_fetch_lets_the_next_caller_try_again(client, sandbox):
	sandbox.fault(OAUTH, "status", status=503, times=3)
	with pytest.raises(daraja.APIError) as caught:
		client.access_token()
	assert caught.value.http_status == 503
	assert sandbox.count(OAUTH) == 3  # read-only: tried three times in all
	assert client.access_token()
	assert sandbox.count(OAUTH) == 4


def test_store_is_consulted_before_the_network(make_client, sandbox):
	store = MemoryStore(sandbox.issue_token(), time.time() + 3000)
	client = make_client(token_store=store)
	assert client.access_token() == store.value[0]
	query(client)
	assert sandbox.count(OAUTH) == 0 and store.loads == 1


def test_store_is_told_about_new_tokens(make_client, sandbox):
	store = MemoryStore()
	client = make_client(token_store=store)
	token = client.access_token()
	assert store.stores[0][0] == token
	assert 3400 < store.stores[0][1] - time.time() <= 3600
	assert sandbox.count(OAUTH) == 1


def test_expired_token_in_the_store_is_not_used(make_client, sandbox):
	stale = sandbox.issue_token()
	store = MemoryStore(stale, time.time() + 30)  # inside the 60 s margin
	token = make_client(token_store=store).access_token()
	assert token != stale
	assert store.stores == [(token, pytest.approx(time.time() + 3599, abs=5))]
	assert sandbox.count(OAUTH) == 1


def test_token_refused_by_daraja_is_not_taken_back_from_the_store(make_client, sandbox):
	store = MemoryStore(sandbox.issue_token(), time.time() + 3000)
	client = make_client(token_store=store)
	client.access_token()
	sandbox.expire_tokens()
	stale = store.value
	store.store = lambda token, expires_at: None  # a store that did not save the new token
	store.value = stale
	assert query(client).error_code == "400.002.02"
	assert sandbox.count(OAUTH) == 1


@pytest.mark.parametrize(
	"answer",
	[("token",), "token", ("token", "soon"), (1, 2), ("abc\r\nX-Injected: 1", 2e9), ("to ken", 2e9)],
)
def test_malformed_store_answer_is_a_validation_error(make_client, answer):
	store = MemoryStore()
	store.load = lambda: answer
	with pytest.raises(daraja.ValidationError) as caught:
		make_client(token_store=store).access_token()
	assert caught.value.field == "token_store"


def test_store_errors_propagate(make_client):
	store = MemoryStore()

	def broken():
		raise RuntimeError("database is down")

	store.load = broken
	with pytest.raises(RuntimeError, match="database is down"):
		make_client(token_store=store).access_token()


def test_a_failed_token_request_fails_its_waiters_too(client, sandbox):
	"""When Daraja's token endpoint is failing, 16 waiting threads do not each try again."""
	sandbox.fault(OAUTH, "status", status=503)  # the leader retries with backoff meanwhile
	barrier = threading.Barrier(16)
	errors = []

	def call():
		barrier.wait()
		try:
			client.access_token()
		except daraja.DarajaError as e:
			errors.append(e)

	threads = [threading.Thread(target=call) for _ in range(16)]
	for t in threads:
		t.start()
	for t in threads:
		t.join()
	assert len(errors) == 16
	assert all(isinstance(e, daraja.APIError) for e in errors)
	assert sandbox.count(OAUTH) <= 3 + 2  # one leader's attempts, give or take a late arrival


# -- one deadline for the whole call, the token_store included --


class TimedStore(MemoryStore):
	"""A store whose methods take the time the call has left, and whose load takes `delay`."""

	def __init__(self, token=None, expires_at=0.0, delay=0.0):
		super().__init__(token, expires_at)
		self.delay = delay
		self.timeouts = []

	def load(self, timeout=None):
		self.timeouts.append(("load", timeout))
		time.sleep(min(self.delay, timeout) if timeout is not None else self.delay)
		return super().load()

	def store(self, token, expires_at, timeout=None):
		self.timeouts.append(("store", timeout))
		super().store(token, expires_at)


def test_store_is_given_the_time_the_call_has_left(make_client, sandbox):
	store = TimedStore()
	token = make_client(token_store=store, timeout=4.0).access_token()
	assert store.stores == [(token, pytest.approx(time.time() + 3599, abs=5))]
	assert [what for what, _ in store.timeouts] == ["load", "store"]
	assert all(0 < timeout <= 4.0 for _, timeout in store.timeouts)
	assert store.timeouts[1][1] < store.timeouts[0][1]  # the token request took some of it


@pytest.mark.parametrize("form", ["keyword", "keyword_only", "kwargs"])
def test_every_way_of_taking_a_timeout_keyword_is_used(make_client, form):
	seen = []

	class Store:
		if form == "keyword":

			def load(self, timeout=None):
				seen.append(timeout)

		elif form == "keyword_only":

			def load(self, *, timeout):
				seen.append(timeout)

		else:

			def load(self, **options):
				seen.append(options["timeout"])

		def store(self, token, expires_at):  # the old signature: called without one
			seen.append("stored")

	make_client(token_store=Store(), timeout=3.0).access_token()
	assert len(seen) == 2 and 0 < seen[0] <= 3.0 and seen[1] == "stored"


def test_slow_store_load_ends_the_call_by_its_deadline(make_client, sandbox):
	store = TimedStore(delay=3.0)  # sleeps no longer than the timeout it is given
	client = make_client(token_store=store, timeout=1.0, connect_timeout=1.0)
	started = time.monotonic()
	with pytest.raises(daraja.TimeoutError) as caught:
		client.access_token()
	assert time.monotonic() - started < 1.5
	assert caught.value.sent is False and "token_store" in str(caught.value)
	assert sandbox.count(OAUTH) == 0  # no token request after the time ran out


def test_slow_store_with_the_old_signature_still_ends_in_a_timeout_error(make_client, sandbox):
	store = MemoryStore()
	plain_load = store.load

	def slow_load():  # takes no timeout: the core cannot shorten it, only refuse to go on
		time.sleep(1.3)
		return plain_load()

	store.load = slow_load
	client = make_client(token_store=store, timeout=1.0, connect_timeout=1.0)
	with pytest.raises(daraja.TimeoutError):
		client.access_token()
	assert sandbox.count(OAUTH) == 0 and store.stores == []


def test_a_token_the_store_gave_too_late_serves_the_next_call(make_client, sandbox):
	token = sandbox.issue_token()
	store = MemoryStore(token, time.time() + 3000)
	plain_load = store.load

	def slow_load():
		time.sleep(1.3)
		return plain_load()

	store.load = slow_load
	client = make_client(token_store=store, timeout=1.0, connect_timeout=1.0)
	with pytest.raises(daraja.TimeoutError):
		client.access_token()
	assert client.access_token() == token  # from the cache, without asking the store again
	assert store.loads == 1 and sandbox.count(OAUTH) == 0


def test_a_waiter_ends_by_its_own_deadline_not_the_leaders(make_client, sandbox):
	"""Two Clients of one site share the cache entry; the one with the shorter timeout waits for
	the other's token request only until its own deadline."""
	leader, waiter = make_client(timeout=5.0), make_client(timeout=1.0, connect_timeout=1.0)
	sandbox.fault(OAUTH, "delay", seconds=2.5, times=1)
	tokens = []
	thread = threading.Thread(target=lambda: tokens.append(leader.access_token()))
	thread.start()
	time.sleep(0.2)  # the leader's request is under way
	started = time.monotonic()
	with pytest.raises(daraja.TimeoutError, match="another thread's token request"):
		waiter.access_token()
	elapsed = time.monotonic() - started
	thread.join()
	assert 0.9 < elapsed < 1.5
	assert len(tokens) == 1 and waiter.access_token() == tokens[0]
	assert sandbox.count(OAUTH) == 1


def test_a_leader_out_of_time_in_the_store_does_not_fail_its_waiters(make_client, sandbox):
	"""The short-lived leader's timeout says nothing about Daraja: a waiter with time left asks the
	store itself, then Daraja."""
	store = TimedStore(delay=3.0)
	leader = make_client(token_store=store, timeout=1.0, connect_timeout=1.0)
	waiter = make_client(token_store=store, timeout=5.0)
	errors = []

	def lead():
		try:
			leader.access_token()
		except daraja.TimeoutError as e:
			errors.append(e)

	thread = threading.Thread(target=lead)
	thread.start()
	time.sleep(0.2)
	store.delay = 0.0  # the next load answers at once
	token = waiter.access_token()
	thread.join()
	assert len(errors) == 1 and "token_store" in str(errors[0])
	assert store.stores == [(token, pytest.approx(time.time() + 3599, abs=5))]
	assert sandbox.count(OAUTH) == 1
