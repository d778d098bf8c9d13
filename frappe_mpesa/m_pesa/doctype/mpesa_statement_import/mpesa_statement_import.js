// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Mpesa Statement Import", {
	refresh(frm) {
		const status = frm.doc.status;
		if (!frm.is_new() && ["Draft", "Failed"].includes(status) && frm.has_perm("write")) {
			frm.add_custom_button(status === "Failed" ? __("Import again") : __("Import"), () =>
				frm.call({ doc: frm.doc, method: "start_import", freeze: true, freeze_message: __("Importing...") })
					.then(() => frm.reload_doc())
			).addClass("btn-primary");
		}
		if (["Queued", "Running"].includes(status)) {
			frm.dashboard.set_headline_alert(__("The import is {0}; this form refreshes when it ends.", [__(status)]), "blue");
			setTimeout(() => frm.reload_doc(), 5000);
		}
		if (status === "Failed" && frm.doc.error) {
			frm.dashboard.set_headline_alert(frappe.utils.escape_html(frm.doc.error), "red");
		}
	},
});
