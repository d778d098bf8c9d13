// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

// The form header shows the same indicator (frappe.get_indicator reads these settings).

frappe.listview_settings["Mpesa Callback Log"] = {
	add_fields: ["status"],
	get_indicator(doc) {
		const colors = { Applied: "green", Duplicate: "gray", Unmatched: "orange", Mismatch: "red", Invalid: "red" };
		return [__(doc.status), colors[doc.status] || "gray", `status,=,${doc.status}`];
	},
};
