# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class B2CDisbursementPayee(Document):
	"""One payee of a B2C batch, with its own OriginatorConversationID and status (see the parent)."""
