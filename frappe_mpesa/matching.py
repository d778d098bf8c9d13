"""What a customer's account number names: the rules, the normalisation, the verdict.

Plain Python (no Frappe import), so every rule is tested by pytest without a site. The ERPNext
layer supplies ``lookup``, the one function that reads the database, and acts on the result.

A C2B payment carries the account number the customer typed (``BillRefNumber``). Each settings
record has an ordered list of rules, each naming a DocType and the field the number may equal
(``name`` for a document's ID). Numbers and field values are compared after the same
normalisation: upper case, without spaces, dashes, underscores, dots or slashes, and without the
prefix the shop tells its customers to leave out. The first rule that finds a document wins.
"""

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal

_SEPARATORS = re.compile(r"[\s\-_./\\]+")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_DIGITS = re.compile(r"^\+?\d{9,15}$")


@dataclass(frozen=True)
class Rule:
	"""One matching rule: the account number may equal ``field`` of a ``doctype`` document."""

	doctype: str
	field: str = "name"


# Payer phone: the last rule, for C2B v1 bodies that carry a plain or hashed MSISDN.
PHONE_RULE = Rule("Contact", "phone")

# The rules a new settings record starts with, in order. A Customer field the shop picks (an
# M-Pesa account number, say) is added after these on the settings record.
DEFAULT_RULES = (
	Rule("Sales Invoice"),
	Rule("Sales Order"),
	Rule("POS Invoice"),
	Rule("Customer"),
)


@dataclass(frozen=True)
class Match:
	"""The document a payment was matched to, and the rule that found it."""

	rule: Rule
	name: str


def normalise(reference, prefix=""):
	"""The comparable form of an account number or a field value: upper case, no separators,
	without ``prefix`` (itself normalised) at its start. Empty for None or blank input."""
	if reference is None:
		return ""
	key = _SEPARATORS.sub("", str(reference)).upper()
	start = _SEPARATORS.sub("", prefix or "").upper()
	if start and key.startswith(start) and len(key) > len(start):
		key = key[len(start) :]
	return key


def variants(reference, prefix=""):
	"""The spellings of a reference worth an exact (indexed) lookup before a normalised scan:
	as typed, upper-cased, and with the shop's prefix put back. Order kept, duplicates dropped."""
	typed = (reference or "").strip()
	out = []
	for candidate in (typed, typed.upper(), (prefix + typed).upper() if prefix else ""):
		if candidate and candidate not in out:
			out.append(candidate)
	return out


def match(reference, rules, lookup, prefix=""):
	"""The first rule whose ``lookup(rule, key, variants)`` returns a document name, as a Match.

	``key`` is the normalised reference and ``variants`` its spellings to try exactly first. None
	when the reference is blank or no rule finds anything."""
	key = normalise(reference, prefix)
	if not key:
		return None
	spellings = variants(reference, prefix)
	for rule in rules:
		if rule == PHONE_RULE:
			continue
		name = lookup(rule, key, spellings)
		if name:
			return Match(rule, name)
	return None


def msisdn_key(value):
	"""The form in which a payer's MSISDN is compared with a Contact's phone: the lower-case
	SHA-256 hex of the 2547XXXXXXXX number. A 64-hex value is already such a hash (C2B v2
	callbacks from some shortcodes); a masked value ("2547****149") can't be matched: None."""
	if value is None:
		return None
	text = str(value).strip()
	if _HEX64.match(text):
		return text.lower()
	phone = kenyan_phone(text)
	return hashlib.sha256(phone.encode()).hexdigest() if phone else None


def kenyan_phone(value):
	"""A phone number as 2547XXXXXXXX / 2541XXXXXXXX, or None when it isn't one (or is masked)."""
	text = re.sub(r"[\s\-()]", "", str(value or ""))
	if not _DIGITS.match(text):
		return None
	digits = text.lstrip("+")
	if digits.startswith("254") and len(digits) == 12:
		national = digits[3:]
	elif digits.startswith("0") and len(digits) == 10:
		national = digits[1:]
	elif len(digits) == 9:
		national = digits
	else:
		return None
	return "254" + national if national[0] in "71" else None


@dataclass(frozen=True)
class Target:
	"""What validation needs to know of a matched document."""

	doctype: str
	name: str
	docstatus: int  # 0 draft, 1 submitted, 2 cancelled; masters (Customer) count as 1
	outstanding: Decimal | None = None  # None: not a document that can be paid off
	disabled: bool = False


# Daraja's rejection code for an invalid account number.
REJECT_ACCOUNT = "C2B00012"


def verdict(target, amount, allow_advances=False):
	"""Accept or reject a C2B validation request for ``target`` (None: nothing matched, which
	is accepted and left Unmatched: a person allocates it). Returns (accepted, reason)."""
	if target is None:
		return True, "no document matched: recorded as Unmatched"
	label = f"{target.doctype} {target.name}"
	if target.docstatus == 2:
		return False, f"{label} is cancelled"
	if target.disabled:
		return False, f"{label} is disabled"
	if target.outstanding is None:
		return True, f"{label} matched"
	if target.docstatus == 0:
		return False, f"{label} is not submitted"
	if target.outstanding <= 0 and not allow_advances:
		return False, f"{label} is already paid"
	if amount is not None and target.outstanding > 0 and Decimal(amount) > target.outstanding and not allow_advances:
		return False, f"{label} has only {target.outstanding} outstanding"
	return True, f"{label} matched"
