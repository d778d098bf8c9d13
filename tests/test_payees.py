"""Payout batches from CSV: every row checked with the core's rules, a bad row named."""

import pytest

from frappe_mpesa.payees import PayeeError, read_csv, whole_shillings


def csv_bytes(lines):
	return ("\n".join(lines) + "\n").encode()


def test_rows_are_read_with_phones_normalised_and_amounts_whole():
	payees = read_csv(csv_bytes(["phone,amount,name,remarks", "0712 345 678,1500,Jane Wanjiru,Salary Nov",
		"+254 110 000 001,\"2,000\",Otieno,"]))
	assert [(p.row, p.phone, p.amount, p.name, p.remarks) for p in payees] == [
		(2, "254712345678", 1500, "Jane Wanjiru", "Salary Nov"),
		(3, "254110000001", 2000, "Otieno", "Payment"),
	]


def test_headings_in_any_order_and_a_file_without_header():
	a = read_csv(csv_bytes(["Amount,Remarks,Phone,Name", "100,Refund,0712345678,A"]))
	b = read_csv(csv_bytes(["0712345678,100,A,Refund"]))
	assert [(p.phone, p.amount, p.name, p.remarks) for p in a] == [(p.phone, p.amount, p.name, p.remarks) for p in b]
	assert b[0].row == 1


def test_a_bad_phone_on_row_7_names_row_7_and_nothing_is_imported():
	lines = ["phone,amount,name,remarks"] + [f"07123456{i:02d},100,P{i},Pay" for i in range(10)]
	lines[6] = "not a phone,100,P5,Pay"  # row 7
	with pytest.raises(PayeeError) as caught:
		read_csv(csv_bytes(lines))
	assert caught.value.row == 7 and caught.value.column == "phone"
	assert str(caught.value).startswith("row 7, column 'phone': 'not a phone' is not a Kenyan mobile number")


@pytest.mark.parametrize(
	"amount, message",
	[("9", "outside 10..250000"), ("250001", "outside"), ("10.50", "not a whole number"), ("ten", "not an amount"),
		("", "not an amount"), ("1e99999", "not an amount"), ("NaN", "not an amount")],
)
def test_bad_amounts_name_the_row_and_column(amount, message):
	with pytest.raises(PayeeError, match=f"row 2, column 'amount': .*{message}"):
		read_csv(csv_bytes(["phone,amount", f"0712345678,{amount}"]))


def test_remarks_and_names_are_bounded():
	with pytest.raises(PayeeError, match="row 2, column 'remarks'"):
		read_csv(csv_bytes(["phone,amount,name,remarks", "0712345678,100,A,x"]))
	with pytest.raises(PayeeError, match="row 2, column 'name'"):
		read_csv(csv_bytes(["phone,amount,name", "0712345678,100," + "n" * 141]))


@pytest.mark.parametrize("data, message", [(b"", "empty"), (b"phone,amount\n", "no payees"), (b"phone,amount\n,\n", "no payees")])
def test_empty_files(data, message):
	with pytest.raises(PayeeError, match=message):
		read_csv(data)


def test_whole_shillings_limits_are_the_callers():
	assert whole_shillings("1,000", 1, 1000) == 1000
	with pytest.raises(ValueError, match="outside 1..999"):
		whole_shillings(1000, 1, 999)


def test_b2b_and_tax_fields_follow_the_cores_limits():
	from frappe_mpesa.payees import account_reference, prn, shortcode

	assert shortcode(" 888880 ") == "888880" and shortcode("5123456") == "5123456"
	for bad in ("", "1234", "12345678", "88-880", None):
		with pytest.raises(ValueError):
			shortcode(bad)
	assert account_reference(" ACC-77 ", required=True) == "ACC-77"
	assert account_reference("", required=False) is None
	for bad, required in (("", True), ("x" * 14, False), ("a\tb", False)):
		with pytest.raises(ValueError):
			account_reference(bad, required)
	assert prn(" 2026k0001234 ") == "2026K0001234"
	for bad in ("", "12-34", "PRN 1", "1234567890ABCD"):
		with pytest.raises(ValueError, match="PRN"):
			prn(bad)
