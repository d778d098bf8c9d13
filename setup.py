"""Build the frappe_mpesa._daraja C extension against libcurl and OpenSSL.

Flags come from pkg-config. When a library or pkg-config itself is missing,
the build stops with the Debian packages to install, instead of a compiler
error about a missing header.
"""

import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup

DEBIAN_PACKAGES = "libcurl4-openssl-dev libssl-dev pkg-config python3-dev"
REQUIRED = {"libcurl": "7.80.0", "openssl": "1.1.1"}  # 7.80: CURLOPT_PREREQFUNCTION


def stop(reason):
	sys.exit(
		f"frappe_mpesa: cannot build the _daraja extension: {reason}.\n"
		f"On Debian or Ubuntu install the build dependencies with:\n"
		f"    sudo apt-get install {DEBIAN_PACKAGES}"
	)


def pkg_config(*args):
	try:
		out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
	except subprocess.CalledProcessError:
		return None
	return out.stdout.split()


def library_flags():
	if shutil.which("pkg-config") is None:
		stop("pkg-config was not found")
	flags = {"include_dirs": [], "library_dirs": [], "libraries": []}
	for name, minimum in REQUIRED.items():
		if pkg_config(f"--atleast-version={minimum}", name) is None:
			found = pkg_config("--modversion", name)
			stop(f"{name} >= {minimum} is needed (found: {found[0] if found else 'none'})")
		for flag in pkg_config("--cflags", "--libs", name):
			if flag.startswith("-I"):
				flags["include_dirs"].append(flag[2:])
			elif flag.startswith("-L"):
				flags["library_dirs"].append(flag[2:])
			elif flag.startswith("-l"):
				flags["libraries"].append(flag[2:])
	return flags


def compile_args():
	args = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-D_GNU_SOURCE"]
	extra = os.environ.get("DARAJA_CFLAGS")
	if extra:
		args += extra.split()
	return args


def link_args():
	extra = os.environ.get("DARAJA_LDFLAGS")
	return ["-pthread", *extra.split()] if extra else ["-pthread"]


sources = sorted(glob.glob("csrc/*.c"))
extension = Extension(
	"frappe_mpesa._daraja",
	sources=sources,
	depends=glob.glob("csrc/*.h"),
	extra_compile_args=compile_args(),
	extra_link_args=link_args(),
	**library_flags(),
)

setup(ext_modules=[extension])
