"""Spreading a receipt over open invoices: oldest due first, partial and excess amounts, rounding."""

from datetime import date
from decimal import Decimal

import pytest

from frappe_mpesa.allocation import AllocationError, OpenItem, allocate, convert, money

D = Decimal
JAN, FEB, MAR = date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)
INVOICES = [
	OpenItem("SI-3", D("1000"), MAR, date(2026, 3, 1)),
	OpenItem("SI-1", D("1000"), JAN, date(2026, 1, 1)),
	OpenItem("SI-2", D("1000"), FEB, date(2026, 2, 1)),
]


@pytest.mark.parametrize(
	"amount, expected, left",
	[
		("2500", [("SI-1", "1000"), ("SI-2", "1000"), ("SI-3", "500")], "0"),  # two and a half
		("3000", [("SI-1", "1000"), ("SI-2", "1000"), ("SI-3", "1000")], "0"),
		("3500", [("SI-1", "1000"), ("SI-2", "1000"), ("SI-3", "1000")], "500"),  # excess: advance
		("999.99", [("SI-1", "999.99")], "0"),
		("0", [], "0"),
		("1,000", [("SI-1", "1000")], "0"),
	],
)
def test_oldest_due_date_first_with_partial_and_excess(amount, expected, left):
	result = allocate(amount, INVOICES)
	assert [(item.name, str(share)) for item, share in result.rows] == [(n, str(D(a).quantize(D("0.01")))) for n, a in expected]
	assert result.unallocated == D(left)
	assert result.allocated + result.unallocated == money(amount)


def test_ties_on_due_date_go_by_posting_date_then_name():
	same_due = [
		OpenItem("B", D(10), JAN, date(2026, 1, 5)),
		OpenItem("A", D(10), JAN, date(2026, 1, 5)),
		OpenItem("C", D(10), JAN, date(2026, 1, 2)),
	]
	assert [i.name for i, _ in allocate(30, same_due).rows] == ["C", "A", "B"]


def test_items_without_due_date_come_last_and_paid_ones_are_passed_over():
	items = [OpenItem("NODATE", D(50)), OpenItem("PAID", D(0), JAN), OpenItem("OPEN", D(50), FEB)]
	result = allocate(80, items)
	assert [(i.name, s) for i, s in result.rows] == [("OPEN", D("50.00")), ("NODATE", D("30.00"))]


def test_nothing_open_leaves_everything_unallocated():
	result = allocate("750.50", [])
	assert result.rows == [] and result.unallocated == D("750.50")


@pytest.mark.parametrize(
	"amount, items, message",
	[
		("-1", [], "amount: -1.00 is negative"),
		("abc", [], "amount: 'abc' is not a number"),
		("NaN", [], "not a finite number"),
		("1E+999999", [], "too large"),
		("10", [OpenItem("RET-1", D("-5"), JAN)], "RET-1 outstanding"),
	],
)
def test_bad_amounts_are_errors_that_name_them(amount, items, message):
	with pytest.raises(AllocationError, match=message):
		allocate(amount, items)


@pytest.mark.parametrize(
	"value, precision, expected",
	[("0.005", 2, "0.01"), ("0.004", 2, "0.00"), ("2.5", 0, "3"), ("1.005", 2, "1.01"), (D("10"), 2, "10.00")],
)
def test_money_rounds_half_up_like_erpnext(value, precision, expected):
	assert money(value, precision) == D(expected)


def test_rounding_loses_nothing_between_shares_and_rest():
	items = [OpenItem(f"SI-{i}", D("33.335"), JAN) for i in range(3)]
	result = allocate("100", items)
	assert result.allocated + result.unallocated == D("100.00")
	assert [s for _, s in result.rows] == [D("33.34"), D("33.34"), D("33.32")]


@pytest.mark.parametrize(
	"amount, rate, expected",
	[("1290", "0.0077519", "10.00"), ("100", "1", "100.00"), ("1000", "0.00775", "7.75")],
)
def test_convert_at_an_exchange_rate(amount, rate, expected):
	assert convert(amount, rate) == D(expected)


def test_convert_refuses_a_zero_or_negative_rate():
	with pytest.raises(AllocationError, match="exchange rate"):
		convert(100, 0)
