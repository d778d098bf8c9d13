# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class MpesaStatementImportLine(Document):
	# One row of an imported statement and what the import did with it.
	pass
