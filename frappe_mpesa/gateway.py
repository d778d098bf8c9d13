"""Rules of the ERPNext payment gateway contract that need no Frappe (tested by pytest without a site).

ERPNext reaches an Mpesa Settings record through frappe/payments' Payment Gateway record
"Mpesa-<settings name>"; see payment_requests.py for the Frappe side.
"""

import re

# M-Pesa moves Kenya shillings only.
CURRENCIES = ("KES",)
# payments names the Payment Gateway of an Mpesa Settings record this way; ERPNext's accounts and
# Payment Gateway Accounts already made for payments' records keep working under our controller.
GATEWAY_PREFIX = "Mpesa-"
# Daraja's AccountReference for an STK push (the C core refuses longer ones).
ACCOUNT_REFERENCE_MAX = 12


def gateway_name(settings_name):
	return f"{GATEWAY_PREFIX}{settings_name}"


def account_reference(name):
	"""A document name fitted into Daraja's 12-character AccountReference.

	The customer sees it on the prompt. A name that fits is kept whole; a longer one keeps its end,
	where naming series put the counter that tells documents apart ("ACC-PRQ-2026-00017" becomes
	"PRQ202600017"), with separators dropped first so more of it survives.
	"""
	name = (name or "").strip()
	if len(name) <= ACCOUNT_REFERENCE_MAX:
		return name
	squeezed = re.sub(r"[^0-9A-Za-z]", "", name) or name
	return squeezed[-ACCOUNT_REFERENCE_MAX:]


def supported_currency(currency):
	return (currency or "").strip().upper() in CURRENCIES
