"""The facade and the type stub describe the C module as it is."""

import ast
import pathlib

from frappe_mpesa import _daraja, daraja

STUB = pathlib.Path(_daraja.__file__).with_name("_daraja.pyi")


def stub_names():
	tree = ast.parse(STUB.read_text())
	module = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
	module |= {t.id for node in tree.body if isinstance(node, ast.AnnAssign) for t in [node.target]}
	client = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Client")
	methods = {node.name for node in client.body if isinstance(node, ast.FunctionDef)}
	return module, methods


def public(names):
	return {name for name in names if not name.startswith("_")}


def test_the_facade_exports_everything_the_module_has():
	assert public(dir(_daraja)) - {"Client"} <= set(daraja.__all__) | {"Client"}
	assert all(getattr(daraja, name) is getattr(_daraja, name) for name in public(dir(_daraja)))


def test_the_stub_names_every_function_and_client_method():
	module, methods = stub_names()
	functions = {name for name in public(dir(_daraja)) if callable(getattr(_daraja, name))}
	assert functions <= module
	runtime = {name for name in public(dir(daraja.Client)) if callable(getattr(daraja.Client, name))}
	assert runtime - {"__init__"} == methods - {"__init__"}
