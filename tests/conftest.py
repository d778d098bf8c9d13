"""Fixtures: the real extension against the real embedded sandbox over local HTTPS."""

import secrets

import pytest

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import (
	CA_FILE,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	MPESA_TEST_CERT_PEM,
	CallbackReceiver,
	Sandbox,
)

OAUTH = "/oauth/v1/generate"
STK_PUSH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY = "/mpesa/stkpushquery/v1/query"


@pytest.fixture
def credentials():
	"""Consumer credentials unique to one test. The process-wide token cache is keyed by host,
	key and secret, and a later sandbox may get an earlier one's port: fresh credentials keep
	every test's cache cold."""
	tag = secrets.token_hex(6)
	return f"{DEFAULT_CONSUMER_KEY}-{tag}", f"{DEFAULT_CONSUMER_SECRET}-{tag}"


@pytest.fixture
def sandbox(credentials):
	"""A fresh sandbox per test that knows this test's credentials."""
	key, secret = credentials
	with Sandbox(callback_delay=0.05, consumer_key=key, consumer_secret=secret) as sb:
		yield sb


@pytest.fixture(scope="session")
def receiver():
	with CallbackReceiver() as rx:
		yield rx


@pytest.fixture
def make_client(sandbox, credentials):
	def make(**kwargs):
		kwargs.setdefault("base_url", sandbox.url)
		kwargs.setdefault("ca_file", CA_FILE)
		key = kwargs.pop("consumer_key", credentials[0])
		secret = kwargs.pop("consumer_secret", credentials[1])
		return daraja.Client(key, secret, **kwargs)

	return make


@pytest.fixture
def client(make_client):
	return make_client()


@pytest.fixture
def stk_args(receiver):
	"""Valid STK push arguments for the sandbox; tests override single fields."""
	return {
		"shortcode": DEFAULT_SHORTCODE,
		"passkey": DEFAULT_PASSKEY,
		"amount": 10,
		"phone": "0708374149",
		"callback_url": receiver.url + "/hooks/stk",
		"account_reference": "INV-0001",
		"description": "Order 1",
	}


INITIATOR_NAME = "testapi"
INITIATOR_PASSWORD = "Safaricom999!*!"


@pytest.fixture(scope="session")
def credential():
	"""The Security Credential for the sandbox's initiator, made with its test certificate."""
	with open(MPESA_TEST_CERT_PEM, "rb") as f:
		return daraja.security_credential(f.read(), INITIATOR_PASSWORD)


@pytest.fixture
def initiator(receiver, credential):
	"""The arguments every initiator API takes."""
	return {
		"initiator_name": INITIATOR_NAME,
		"security_credential": credential,
		"result_url": receiver.url + "/hooks/result",
		"queue_timeout_url": receiver.url + "/hooks/timeout",
	}


def callback_with(receiver, key, value, timeout=5.0):
	"""The first callback whose JSON holds key == value at any depth."""
	import time

	def holds(node):
		if isinstance(node, dict):
			return node.get(key) == value or any(holds(v) for v in node.values())
		if isinstance(node, list):
			return any(holds(v) for v in node)
		return False

	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		for request in receiver.received:
			if holds(request.json):
				return request
		time.sleep(0.02)
	raise AssertionError(f"no callback with {key}={value!r}")
