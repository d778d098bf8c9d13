"""How one receipt is spread over a customer's open invoices: oldest due date first.

Plain Python (no Frappe import): the ERPNext layer reads the open invoices, calls ``allocate``
and writes the Payment Entry's references from its answer. Amounts are Decimals rounded to the
currency's precision with half-up rounding, as ERPNext rounds; nothing is lost to rounding: the
allocations and the unallocated rest always add up to the receipt exactly.
"""

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation


class AllocationError(ValueError):
	"""An amount or an invoice that can't be allocated; the message names it."""


@dataclass(frozen=True)
class OpenItem:
	"""An invoice (or order) with something left to pay."""

	name: str
	outstanding: Decimal
	due_date: date | None = None
	posting_date: date | None = None
	doctype: str = "Sales Invoice"


@dataclass
class Allocation:
	"""The receipt's share per invoice, in order, and what is left over as an advance."""

	rows: list = field(default_factory=list)  # [(OpenItem, Decimal)]
	unallocated: Decimal = Decimal(0)

	@property
	def allocated(self):
		return sum((amount for _, amount in self.rows), Decimal(0))


def money(value, precision=2, what="amount"):
	"""``value`` as a Decimal rounded half-up to ``precision`` places; AllocationError naming
	``what`` when it isn't a finite number."""
	try:
		number = value if isinstance(value, Decimal) else Decimal(str(value).replace(",", "").strip())
	except (InvalidOperation, ValueError) as e:
		raise AllocationError(f"{what}: {value!r} is not a number") from e
	if not number.is_finite():
		raise AllocationError(f"{what}: {value!r} is not a finite number")
	if number.adjusted() > 15:
		raise AllocationError(f"{what}: {value!r} is too large")
	return number.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)


def _order(item):
	far = date.max
	return (item.due_date or item.posting_date or far, item.posting_date or far, item.name)


def allocate(amount, items, precision=2):
	"""Spread ``amount`` over ``items``, oldest due date first (then oldest posting date, then
	name), each up to its outstanding amount; the rest is ``unallocated``. Items with nothing
	outstanding are passed over. A negative amount or outstanding is an AllocationError."""
	total = money(amount, precision)
	if total < 0:
		raise AllocationError(f"amount: {total} is negative")
	result = Allocation()
	left = total
	for item in sorted(items, key=_order):
		outstanding = money(item.outstanding, precision, f"{item.name} outstanding")
		if outstanding < 0:
			raise AllocationError(f"{item.name} outstanding: {outstanding} is negative (a return?)")
		if left <= 0:
			break
		if outstanding == 0:
			continue
		share = min(left, outstanding)
		result.rows.append((item, share))
		left -= share
	result.unallocated = left
	return result


def convert(amount, rate, precision=2):
	"""``amount`` in the receipt's currency expressed in another at ``rate`` (units of the
	other currency per unit of the receipt's), rounded half-up."""
	factor = money(rate, 9, "exchange rate")
	if factor <= 0:
		raise AllocationError(f"exchange rate: {rate!r} must be positive")
	return money(money(amount, precision) * factor, precision)
