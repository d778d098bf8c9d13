"""The Python layers import only downward: nothing below the ERPNext layer (frappe_mpesa/erpnext/)
imports it, and records.py (Daraja's facts) imports no flow or ERPNext module. Read as source, no
Frappe needed."""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "frappe_mpesa"
BELOW_ERPNEXT = ["daraja.py", "records.py", "callbacks.py", "api.py", "initiator.py", "states.py", "tasks.py"]


def imported_modules(path):
	"""Every module a file imports, anywhere in it (function-level imports included)."""
	names = set()
	for node in ast.walk(ast.parse(path.read_text())):
		if isinstance(node, ast.Import):
			names.update(alias.name for alias in node.names)
		elif isinstance(node, ast.ImportFrom) and node.module:
			names.add(node.module)
			names.update(f"{node.module}.{alias.name}" for alias in node.names)
	return names


@pytest.mark.parametrize("filename", BELOW_ERPNEXT)
def test_nothing_below_imports_the_erpnext_layer(filename):
	imports = imported_modules(APP / filename)
	assert not {name for name in imports if name.startswith("frappe_mpesa.erpnext") or name.startswith("erpnext")}


def test_records_imports_no_flow():
	imports = imported_modules(APP / "records.py")
	flows = {"frappe_mpesa.payment_requests", "frappe_mpesa.api", "frappe_mpesa.initiator"}
	assert not imports & flows, imports & flows


def test_erpnext_handlers_in_hooks_exist():
	hooks = (APP / "hooks.py").read_text()
	tree = ast.parse(hooks)
	paths = [
		node.value
		for node in ast.walk(tree)
		if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("frappe_mpesa.erpnext.")
	]
	assert paths
	for dotted in paths:
		module, function = dotted.rsplit(".", 1)
		source = APP.parent / (module.replace(".", "/") + ".py")
		assert f"def {function}(" in source.read_text(), dotted
