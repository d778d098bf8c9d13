// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Mpesa Callback Log", {
	refresh(frm) {
		// What Daraja sent, as recorded: nothing here is edited by hand.
		frm.disable_save();
	},
});
