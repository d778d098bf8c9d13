// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.listview_settings["Mpesa C2B Payment Register"] = {
	add_fields: ["status"],
	get_indicator(doc) {
		const colours = {
			Unmatched: "orange",
			Matched: "blue",
			Posted: "green",
			"Partly allocated": "yellow",
			"In POS Invoice": "green",
			Cancelled: "gray",
			Reversed: "red",
		};
		const status = doc.status || "Unmatched";
		return [__(status), colours[status] || "gray", "status,=," + status];
	},
};
