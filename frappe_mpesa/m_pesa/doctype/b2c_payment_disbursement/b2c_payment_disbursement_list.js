// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

// The form header shows the same indicator (frappe.get_indicator reads these settings).

frappe.listview_settings["B2C Payment Disbursement"] = {
	add_fields: ["status", "docstatus", "currency"],
	has_indicator_for_draft: true,
	get_indicator(doc) {
		const colors = {
			Draft: "gray", Queued: "blue", Sending: "orange", Sent: "orange", Completed: "green",
			"Partly Completed": "yellow", Failed: "red", Unknown: "yellow",
		};
		const status = doc.status || "Draft";
		return [__(status), colors[status] || "gray", `status,=,${status}`];
	},
};
