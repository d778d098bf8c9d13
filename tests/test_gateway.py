"""The ERPNext payment gateway rules that need no Frappe (frappe_mpesa.gateway)."""

import subprocess
import sys

import pytest

from frappe_mpesa import gateway


def test_gateway_module_does_not_import_frappe():
	code = "import sys, frappe_mpesa.gateway\nassert 'frappe' not in sys.modules, 'frappe was imported'\n"
	subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
	"name, reference",
	[
		("PR-00001", "PR-00001"),
		("ACC-PRQ-2026", "ACC-PRQ-2026"),  # exactly 12: kept whole
		("ACC-PRQ-2026-00017", "PRQ202600017"),  # the counter at the end survives
		("ACC-PRQ-2026-00018", "PRQ202600018"),
		("  PR-1  ", "PR-1"),
		("Payment Request 2026 000123", "st2026000123"),
		("abcdefghijklmnop", "efghijklmnop"),
		("------------------", "------------"),  # nothing alphanumeric: the end as it is
	],
)
def test_account_reference_fits_daraja(name, reference):
	assert gateway.account_reference(name) == reference
	assert 1 <= len(gateway.account_reference(name)) <= gateway.ACCOUNT_REFERENCE_MAX


def test_account_references_of_consecutive_requests_differ():
	names = [f"ACC-PRQ-2026-{n:05d}" for n in range(1, 200)]
	assert len({gateway.account_reference(name) for name in names}) == len(names)


@pytest.mark.parametrize("name", ["ACC-PRQ-2026-00017", "PR-1", "Payment Request 2026 000123"])
def test_the_core_accepts_the_reference(client, sandbox, stk_args, name):
	# The core refuses an AccountReference over 12 characters before sending anything.
	answer = client.stk_push(**{**stk_args, "account_reference": gateway.account_reference(name)})
	assert answer["ResponseCode"] == "0"


@pytest.mark.parametrize(
	"currency, ok",
	[("KES", True), ("kes", True), (" KES ", True), ("USD", False), ("", False), (None, False)],
)
def test_only_shillings(currency, ok):
	assert gateway.supported_currency(currency) is ok


def test_gateway_name_is_payments_naming():
	# frappe/payments names the gateway of an Mpesa Settings record "Mpesa-<name>"; ERPNext's
	# Payment Gateway Accounts made for payments' records must keep finding it.
	assert gateway.gateway_name("Till 1") == "Mpesa-Till 1"
