"""Matching a C2B account number to a document: normalisation, rule order, validation verdicts."""

import hashlib
from decimal import Decimal

import pytest

from frappe_mpesa import matching
from frappe_mpesa.matching import DEFAULT_RULES, PHONE_RULE, Rule, Target


@pytest.mark.parametrize(
	"reference, prefix, key",
	[
		("ACC-SINV-2026-00001", "", "ACCSINV202600001"),
		("acc sinv 2026 00001", "", "ACCSINV202600001"),
		("  inv_001. ", "", "INV001"),
		("ACC-SINV-2026-00001", "ACC-SINV-", "202600001"),
		("accsinv202600001", "ACC-SINV-", "202600001"),
		("ACC-SINV-", "ACC-SINV-", "ACCSINV"),  # the prefix alone is not stripped to nothing
		("2026-00001", "ACC-SINV-", "202600001"),  # typed without the prefix: unchanged
		("cust/042", "", "CUST042"),
		("", "", ""),
		(None, "", ""),
		("   ", "X", ""),
	],
)
def test_normalise(reference, prefix, key):
	assert matching.normalise(reference, prefix) == key


def test_variants_try_as_typed_then_upper_then_with_the_prefix():
	assert matching.variants(" sinv-1 ", "ACC-") == ["sinv-1", "SINV-1", "ACC-SINV-1"]
	assert matching.variants("SINV-1") == ["SINV-1"]
	assert matching.variants("") == []


def records(**by_doctype):
	"""A lookup over in-memory documents: {doctype: {field value: name}}, compared normalised."""

	def lookup(rule, key, spellings):
		for value, name in by_doctype.get(rule.doctype, {}).items():
			if matching.normalise(value) == key:
				return name
		return None

	return lookup


@pytest.mark.parametrize(
	"reference, expected",
	[
		("ACC-SINV-2026-00001", ("Sales Invoice", "ACC-SINV-2026-00001")),
		("sal-ord-2026-00007", ("Sales Order", "SAL-ORD-2026-00007")),
		("acc-psinv-2026-00003", ("POS Invoice", "ACC-PSINV-2026-00003")),
		("Jane Wanjiru", ("Customer", "Jane Wanjiru")),
		("MP-0042", ("Customer", "Grace Achieng")),  # a Customer field the shop picked
		("NOPE-1", None),
		("", None),
	],
)
def test_first_rule_that_finds_a_document_wins(reference, expected):
	lookup = records(
		**{
			"Sales Invoice": {"ACC-SINV-2026-00001": "ACC-SINV-2026-00001"},
			"Sales Order": {"SAL-ORD-2026-00007": "SAL-ORD-2026-00007"},
			"POS Invoice": {"ACC-PSINV-2026-00003": "ACC-PSINV-2026-00003"},
			"Customer": {"Jane Wanjiru": "Jane Wanjiru", "MP-0042": "Grace Achieng"},
		}
	)
	found = matching.match(reference, DEFAULT_RULES, lookup)
	assert (found and (found.rule.doctype, found.name)) == (expected or None)


def test_rule_order_decides_between_two_documents_with_the_same_reference():
	lookup = records(**{"Sales Invoice": {"X-1": "SI X-1"}, "Sales Order": {"X-1": "SO X-1"}})
	assert matching.match("x1", DEFAULT_RULES, lookup).name == "SI X-1"
	order_first = (Rule("Sales Order"), Rule("Sales Invoice"))
	assert matching.match("x1", order_first, lookup).name == "SO X-1"


def test_any_doctype_and_field_can_be_a_rule_and_lookup_gets_the_key_and_spellings():
	calls = []

	def lookup(rule, key, spellings):
		calls.append((rule, key, tuple(spellings)))
		return "PRJ-9" if rule.doctype == "Project" else None

	rules = (Rule("Sales Invoice"), Rule("Project", "project_code"))
	found = matching.match(" prj 9 ", rules, lookup, prefix="")
	assert found == matching.Match(Rule("Project", "project_code"), "PRJ-9")
	assert calls[0] == (Rule("Sales Invoice"), "PRJ9", ("prj 9", "PRJ 9"))


def test_the_phone_rule_is_not_a_reference_rule():
	seen = []
	matching.match("X", (*DEFAULT_RULES, PHONE_RULE), lambda r, k, s: seen.append(r))
	assert PHONE_RULE not in seen


PHONE_HASH = hashlib.sha256(b"254712345678").hexdigest()


@pytest.mark.parametrize(
	"value, key",
	[
		("254712345678", PHONE_HASH),
		("0712 345 678", PHONE_HASH),
		("+254-712-345678", PHONE_HASH),
		("712345678", PHONE_HASH),
		(PHONE_HASH.upper(), PHONE_HASH),
		("25471****678", None),  # masked (C2B v2)
		("254812345678", None),  # not a Kenyan mobile range
		("", None),
		(None, None),
	],
)
def test_msisdn_key_hashes_plain_numbers_and_keeps_hashes(value, key):
	assert matching.msisdn_key(value) == key


@pytest.mark.parametrize(
	"target, amount, allow, accepted, reason",
	[
		(None, 100, False, True, "Unmatched"),
		(Target("Sales Invoice", "SI-1", 2, Decimal(100)), 100, False, False, "cancelled"),
		(Target("Sales Invoice", "SI-1", 2, Decimal(100)), 100, True, False, "cancelled"),
		(Target("Sales Invoice", "SI-1", 0, Decimal(100)), 100, False, False, "not submitted"),
		(Target("Sales Invoice", "SI-1", 1, Decimal(0)), 100, False, False, "already paid"),
		(Target("Sales Invoice", "SI-1", 1, Decimal(0)), 100, True, True, "matched"),
		(Target("Sales Invoice", "SI-1", 1, Decimal(100)), 100, False, True, "matched"),
		(Target("Sales Invoice", "SI-1", 1, Decimal(100)), 60, False, True, "matched"),
		(Target("Sales Invoice", "SI-1", 1, Decimal(100)), 150, False, False, "only 100 outstanding"),
		(Target("Sales Invoice", "SI-1", 1, Decimal(100)), 150, True, True, "matched"),
		(Target("Customer", "Jane", 1), 500, False, True, "matched"),
		(Target("Customer", "Jane", 1, disabled=True), 500, False, False, "disabled"),
	],
)
def test_validation_verdict(target, amount, allow, accepted, reason):
	ok, why = matching.verdict(target, amount, allow_advances=allow)
	assert ok is accepted
	assert reason in why
