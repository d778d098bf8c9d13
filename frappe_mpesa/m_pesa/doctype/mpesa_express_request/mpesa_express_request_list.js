// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

// The form header shows the same indicator (frappe.get_indicator reads these settings).

frappe.listview_settings["Mpesa Express Request"] = {
	add_fields: ["status", "currency"],
	get_indicator(doc) {
		const colors = { Queued: "blue", Pending: "orange", Success: "green", Failed: "red", Cancelled: "red", Timeout: "yellow", Unknown: "yellow" };
		return [__(doc.status), colors[doc.status] || "gray", `status,=,${doc.status}`];
	},
};
