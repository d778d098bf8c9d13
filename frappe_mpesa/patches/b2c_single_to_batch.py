"""A B2C Payment Disbursement from before batches (one payee on the record itself) becomes a batch
of one row, the row named as the record, so its approval seal, its OriginatorConversationID, its
receipt and any Transaction Status request that names it still match. The old columns stay in the
table (migrate drops none); the parent's unique id and receipt are moved, not copied, so the
unique indexes on the old columns hold nothing the row also holds."""

import frappe

from frappe_mpesa.m_pesa.doctype.b2c_disbursement_payee.b2c_disbursement_payee import (
	B2C,
	DARAJA_FIELDS,
	PAYEE,
	insert_row,
)

MOVED = ("phone", "amount", *DARAJA_FIELDS)
ROW_STATES = {"Queued", "Sent", "Completed", "Failed", "Unknown"}


def execute():
	if not frappe.db.table_exists(B2C) or not frappe.db.has_column(B2C, "phone"):
		return
	frappe.reload_doc("m_pesa", "doctype", "b2c_disbursement_payee")
	frappe.reload_doc("m_pesa", "doctype", "b2c_payment_disbursement")
	columns = [c for c in MOVED if frappe.db.has_column(B2C, c)]
	old = frappe.db.sql(
		f"""select name, docstatus, status, payee_set_by, approval_digest, remarks, error, {", ".join(f"`{c}`" for c in columns)}
		from `tab{B2C}` b
		where phone is not null and phone != ''
		and not exists (select 1 from `tab{PAYEE}` p where p.parent = b.name)""",
		as_dict=True,
	)
	for record in old:
		clear = {c: None for c in ("originator_conversation_id", "transaction_receipt") if c in columns}
		if clear:
			frappe.db.set_value(B2C, record.name, clear, update_modified=False)
		insert_row(
			record.name,
			1,
			record.docstatus,
			record,
			("payee_set_by", "approval_digest", "remarks", "error", *columns),
			name=record.name,
			status=record.status if record.status in ROW_STATES else "Queued",
			failure_confirmed=1 if record.status == "Failed" and record.result_code not in (None, "", "0") else 0,
		)
		completed = record.status == "Completed"
		frappe.db.set_value(
			B2C,
			record.name,
			{
				"status": {"Sent": "Sending"}.get(record.status, record.status),
				"payee_count": 1,
				"total_amount": record.amount,
				"completed_count": 1 if completed else 0,
				"completed_amount": record.amount if completed else 0,
				"failed_count": 1 if record.status == "Failed" else 0,
				"unknown_count": 1 if record.status == "Unknown" else 0,
				"in_flight_count": 1 if record.status in ("Queued", "Sent") else 0,
			},
			update_modified=False,
		)
	if old:
		frappe.db.commit()
