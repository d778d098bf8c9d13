"""Daraja's C2B validation request answered from the books (hook ``mpesa_c2b_validators``).

``callbacks.validate_c2b`` has checked the shortcode and the amount limit; it then asks each
validator in ``hooks.mpesa_c2b_validators`` and rejects with the first code one returns. This
one finds what the account number names under the settings record's rules (first match wins)
and asks ``matching.verdict``: a cancelled document is rejected, and so is a fully paid one (or an
amount above what is outstanding) unless the record allows advances. A number that matches
nothing is accepted: the payment is recorded as Unmatched for a person to allocate.

A few indexed queries, no writes, no job: Daraja waits about 8 s for this answer.
"""

import frappe

from frappe_mpesa import matching
from frappe_mpesa.erpnext import SETTINGS, active, matching_rules


def validate(settings_name, parsed):
	"""None to accept, or Daraja's rejection code (C2B00012, invalid account number)."""
	if not active():
		return None
	# Not the cached document: a change made with db.set_value must count at once.
	settings = frappe.get_doc(SETTINGS, settings_name)
	found = matching_rules.find(settings, parsed.get("BillRefNumber"), parsed.get("MSISDN"))
	if found is None:
		return None
	accepted, reason = matching.verdict(
		matching_rules.target(found), parsed.get("TransAmount"), bool(settings.get("c2b_allow_advances"))
	)
	if accepted:
		return None
	frappe.logger("frappe_mpesa").info(f"C2B validation for {settings_name} rejected: {reason}")
	return matching.REJECT_ACCOUNT
