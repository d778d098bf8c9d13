"""Backfill's plain logic: pull entries and statement rows as the register's C2B fields, the pull
window with its overlap and 48-hour bound, and when a scheduled pull is due."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from frappe_mpesa import backfill, statement
from frappe_mpesa.backfill import EntryError
from frappe_mpesa.statement import NAIROBI

from test_statement import csv_file, portal_rows

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=NAIROBI)
ENTRY = {
	"transactionId": "SL1AB2CD3E",
	"trxDate": "2026-11-28T10:12:44.000+03:00",
	"msisdn": 254708374149,
	"sender": "JOHN K DOE",
	"transactiontype": "c2b-pay-bill-debit",
	"billreference": "INV-7",
	"amount": "5.0",
	"organizationname": "Shop",
}


def test_a_pull_entry_becomes_confirmation_fields():
	got = backfill.from_pull_entry(ENTRY, "600984")
	assert got == {
		"TransID": "SL1AB2CD3E",
		"TransactionType": "Pay Bill",
		"TransTime": datetime(2026, 11, 28, 10, 12, 44, tzinfo=NAIROBI),
		"TransAmount": Decimal("5.00"),
		"BusinessShortCode": "600984",
		"BillRefNumber": "INV-7",
		"InvoiceNumber": "",
		"OrgAccountBalance": None,
		"ThirdPartyTransID": "",
		"MSISDN": "254708374149",
		"FirstName": "JOHN",
		"MiddleName": "K",
		"LastName": "DOE",
	}
	assert backfill.from_pull_entry({**ENTRY, "transactiontype": "c2b-buy-goods-debit"}, 1)["TransactionType"] == (
		"Buy Goods"
	)


@pytest.mark.parametrize(
	"text, expected",
	[
		("2026-11-28T10:12:44.000+03:00", datetime(2026, 11, 28, 10, 12, 44, tzinfo=NAIROBI)),
		("2026-11-28T07:12:44Z", datetime(2026, 11, 28, 10, 12, 44, tzinfo=NAIROBI)),
		("2026-11-28T10:12:44.5+0300", datetime(2026, 11, 28, 10, 12, 44, 500000, tzinfo=NAIROBI)),
		("2026-11-28 10:12:44", datetime(2026, 11, 28, 10, 12, 44, tzinfo=NAIROBI)),
		("2026-11-28T02:12:44-05:00", datetime(2026, 11, 28, 10, 12, 44, tzinfo=NAIROBI)),
	],
)
def test_pull_dates_with_and_without_offsets(text, expected):
	assert backfill.pull_time(text) == expected


def test_typed_values_from_the_core_are_taken_too():
	typed = {**ENTRY, "trxDate": datetime(2026, 11, 28, 7, 12, 44, tzinfo=timezone.utc), "amount": Decimal("5.0")}
	got = backfill.from_pull_entry(typed, "600984")
	assert got["TransTime"] == datetime(2026, 11, 28, 10, 12, 44, tzinfo=NAIROBI)
	assert got["TransAmount"] == Decimal("5.00")


@pytest.mark.parametrize(
	"change, field",
	[
		({"transactionId": ""}, "transactionId"),
		({"transactionId": None}, "transactionId"),
		({"trxDate": "yesterday"}, "trxDate"),
		({"trxDate": None}, "trxDate"),
		({"amount": "five"}, "amount"),
		({"amount": "0"}, "amount"),
		({"amount": "-3"}, "amount"),
		({"amount": "1e400"}, "amount"),
		({"amount": "NaN"}, "amount"),
	],
)
def test_bad_pull_entries_name_the_field(change, field):
	with pytest.raises(EntryError) as caught:
		backfill.from_pull_entry({**ENTRY, **change}, "600984")
	assert caught.value.field == field


def test_pull_entries_one_or_two_lists_deep():
	assert backfill.pull_entries({"Response": [[ENTRY, ENTRY]]}) == [ENTRY, ENTRY]
	assert backfill.pull_entries({"Response": [ENTRY]}) == [ENTRY]
	assert backfill.pull_entries({"Response": [[]]}) == []
	assert backfill.pull_entries({"ResponseRefID": "x"}) == []
	with pytest.raises(EntryError):
		backfill.pull_entries({"Response": "none"})


def test_a_statement_row_becomes_confirmation_fields():
	row = statement.parse(csv_file(portal_rows(1, start=7)), "s.csv").rows[0]
	got = backfill.from_statement_row(row, "600000")
	assert got["TransID"] == row.receipt
	assert got["TransTime"] == row.completed_at
	assert got["TransAmount"] == Decimal("107.00")
	assert got["BillRefNumber"] == "INV-7"
	assert got["BusinessShortCode"] == "600000"
	assert (got["FirstName"], got["MiddleName"], got["LastName"]) == ("CUSTOMER", "", "7")
	assert got["MSISDN"] == "2547****007"  # masked, as the statement shows it


def test_names():
	assert backfill.split_name("") == ("", "", "")
	assert backfill.split_name("JOHN") == ("JOHN", "", "")
	assert backfill.split_name("  JOHN   DOE ") == ("JOHN", "", "DOE")
	assert backfill.split_name("JOHN PAUL K DOE") == ("JOHN", "PAUL K", "DOE")


def test_the_window_overlaps_the_last_and_stays_within_48_hours():
	assert backfill.pull_window(NOW) == (NOW - timedelta(hours=48), NOW)
	last = NOW - timedelta(hours=1)
	assert backfill.pull_window(NOW, last) == (last - timedelta(minutes=10), NOW)
	assert backfill.pull_window(NOW, NOW - timedelta(days=5)) == (NOW - timedelta(hours=48), NOW)
	# A last end in the future (a clock that moved back) never makes an empty or inverted window.
	start, end = backfill.pull_window(NOW, NOW + timedelta(hours=2))
	assert start <= end


@pytest.mark.parametrize(
	"schedule, interval, minutes_ago, due",
	[
		("Off", None, None, False),
		("Off", None, 600, False),
		("Hourly", None, None, True),
		("Hourly", None, 30, False),
		("Hourly", None, 59.7, True),  # a minute cron a few seconds late still runs it
		("Hourly", None, 61, True),
		("Every N minutes", 15, 14, False),
		("Every N minutes", 15, 15, True),
		("Every N minutes", 1, 3, False),  # at least 5 minutes apart
		("Every N minutes", 1, 5, True),
		("Every N minutes", None, 5, True),
		("Every N minutes", "x", 4, False),
		("Sometimes", 15, 600, False),
	],
)
def test_when_a_pull_is_due(schedule, interval, minutes_ago, due):
	now = datetime(2026, 12, 1, 12, 0, 0)
	last = None if minutes_ago is None else now - timedelta(minutes=minutes_ago)
	assert backfill.pull_due(schedule, interval, last, now) is due
