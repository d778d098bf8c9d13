"""Secret hygiene: canary secrets never show in exception text, attributes, reprs,
tracebacks or anything written to logs or the standard streams during failing runs."""

import base64
import logging
import traceback

import pytest
from conftest import STK_PUSH

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import DEFAULT_SHORTCODE, MPESA_TEST_CERT_PEM

CANARY_SECRET = "CanarySecret-7f3a9c"
CANARY_PASSKEY = "CanaryPasskey-51e0b2"
CANARY_PASSWORD = "CanaryInitiator-9d4e1"
CANARIES = [CANARY_SECRET, CANARY_PASSKEY, CANARY_PASSWORD]


def forms(secret):
	"""A secret as it could leak: plain, base64-encoded alone, or inside an STK Password."""
	yield secret
	yield base64.b64encode(secret.encode()).decode()
	yield base64.b64encode(f"{DEFAULT_SHORTCODE}{secret}".encode()).decode()[:16]


def everything_said_by(error):
	parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
	parts += [repr(getattr(error, name, None)) for name in dir(error) if not name.startswith("__")]
	return "\n".join(parts)


def assert_clean(text):
	for canary in CANARIES:
		for leaked in forms(canary):
			assert leaked not in text, f"a secret leaked: {leaked!r}"


def failing_calls(sandbox, receiver, credentials):
	"""Each call fails in its own way while holding a canary secret."""
	key, secret = credentials
	good = daraja.Client(key, secret, base_url=sandbox.url, ca_file=sandbox.ca_file)
	bad_secret = daraja.Client(key, CANARY_SECRET, base_url=sandbox.url, ca_file=sandbox.ca_file)
	stk = {
		"shortcode": DEFAULT_SHORTCODE,
		"passkey": CANARY_PASSKEY,
		"amount": 1,
		"phone": "0708374149",
		"callback_url": receiver.url + "/hooks/stk",
		"account_reference": "A1",
		"description": "D",
	}
	pem = open(MPESA_TEST_CERT_PEM, "rb").read()

	def reset_push():
		sandbox.fault(STK_PUSH, "reset", times=1)
		good.stk_push(**stk)

	yield bad_secret.access_token
	yield lambda: good.stk_push(**stk)  # wrong passkey: refused by the sandbox
	yield lambda: good.stk_push(**{**stk, "amount": 0})
	yield lambda: good.stk_push(**{**stk, "passkey": CANARY_PASSKEY + "\x00"})
	yield reset_push
	yield lambda: daraja.stk_password("12", CANARY_PASSKEY, "20240101000000")
	yield lambda: daraja.security_credential(b"garbage", CANARY_PASSWORD)
	yield lambda: daraja.security_credential(pem, CANARY_PASSWORD * 20)
	yield lambda: daraja.Client("", CANARY_SECRET)
	yield lambda: daraja.Client("k", CANARY_SECRET, base_url="http://x")
	yield lambda: daraja.Client("k", CANARY_SECRET, token_store=object())


def test_no_secret_in_errors_reprs_or_logs(sandbox, receiver, credentials, caplog, capfd):
	caplog.set_level(logging.DEBUG)
	said = []
	for call in failing_calls(sandbox, receiver, credentials):
		with pytest.raises(daraja.DarajaError) as caught:
			call()
		said.append(everything_said_by(caught.value))
	client = daraja.Client(credentials[0], CANARY_SECRET, base_url=sandbox.url)
	said += [repr(client), str(client), repr(daraja.Client("key", CANARY_SECRET))]
	out, err = capfd.readouterr()
	said += [caplog.text, out, err]
	assert len(said) >= 14
	assert_clean("\n".join(said))


def test_canaries_did_reach_the_wire_where_they_belong(sandbox, receiver, credentials):
	"""The hygiene test above means something only if the secrets were really used."""
	for call in failing_calls(sandbox, receiver, credentials):
		try:
			call()
		except daraja.DarajaError:
			pass
	basic = base64.b64encode(f"{credentials[0]}:{CANARY_SECRET}".encode()).decode()
	assert any(r.header("Authorization") == f"Basic {basic}" for r in sandbox.requests)
	push = next(r for r in sandbox.requests if r.path == STK_PUSH)
	assert base64.b64decode(push.json["Password"]).decode().startswith(DEFAULT_SHORTCODE + CANARY_PASSKEY)
