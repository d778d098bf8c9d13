// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Mpesa Settings", {
	refresh(frm) {
		// An input shows a bare number: its label says the currency.
		frm.set_currency_labels(["transaction_limit"], frm.doc.currency || "KES");
		if (frm.is_new()) return;
		const transport = (frm.doc.__onload || {}).callback_transport;
		if (transport && transport.warning) {
			frm.dashboard.set_headline_alert(frappe.utils.escape_html(transport.warning), "orange");
		}
		// Accounts staff read this record's non-secret fields; each action is offered only to the
		// roles the API allows it (and the API checks them again).
		const admin = frappe.user.has_role("System Manager");
		const manager = admin || frappe.user.has_role("Accounts Manager");
		const call = (method, args, message) =>
			frappe.call({
				method: `frappe_mpesa.api.${method}`,
				args: { settings: frm.doc.name, ...args },
				freeze: true,
				freeze_message: message,
			});

		if (admin) {
			frm.add_custom_button(__("Test connection"), () =>
				call("test_connection", {}, __("Asking Daraja for a token...")).then((r) => {
					frappe.msgprint(__("Connected to {0} ({1}).", [r.message.host, r.message.environment]));
				})
			, __("Actions"));

			frm.add_custom_button(__("Register C2B URLs"), () => {
				const production = frm.doc.environment === "Production";
				const again = !!frm.doc.c2b_registered_on;
				const text = production
					? __("Production allows registering C2B URLs once per shortcode. Continue?")
					: __("Register the C2B confirmation and validation URLs?");
				frappe.confirm(text, () =>
					call("register_c2b_urls", { force: production && again ? 1 : 0 }, __("Registering...")).then(() => {
						frappe.show_alert({ message: __("C2B URLs registered"), indicator: "green" });
						frm.reload_doc();
					})
				);
			}, __("Actions"));
		}

		if (manager) {
			frm.add_custom_button(__("Check account balance"), () =>
				call("check_balance", {}, __("Asking for the balance...")).then((r) => {
					frappe.show_alert({ message: __("Balance requested; the result arrives on {0}", [r.message]), indicator: "blue" });
					frappe.set_route("Form", "Mpesa Initiator Request", r.message);
				})
			, __("Actions"));
		}

		if (admin) {
			frm.add_custom_button(__("Rotate callback secret"), () =>
				frappe.confirm(
					__("Callback URLs already given to Daraja (C2B registration, pending requests) keep the old secret and will be refused. Rotate?"),
					() => call("rotate_callback_secret", {}, __("Rotating...")).then(() => frm.reload_doc())
				)
			, __("Actions"));

			frm.add_custom_button(__("Register for Pull Transactions"), () => {
				const production = frm.doc.environment === "Production";
				const again = !!frm.doc.pull_registered_on;
				const text = production
					? __("Production allows registering a shortcode for the pull API once. Continue?")
					: __("Register the shortcode for the pull API?");
				frappe.confirm(text, () =>
					call("register_pull", { force: production && again ? 1 : 0 }, __("Registering...")).then(() => {
						frappe.show_alert({ message: __("Registered for Pull Transactions"), indicator: "green" });
						frm.reload_doc();
					})
				);
			}, __("Actions"));

			frm.add_custom_button(__("Pull transactions now"), () =>
				call("pull_now", {}, __("Pulling transactions...")).then((r) =>
					frappe.set_route("Form", "Mpesa Pull Run", r.message)
				)
			, __("Actions"));
		}
	},
});
