"""Package discovery for the design's folder layout (metadata lives in pyproject.toml).

The folders ctl/, client/ and knife/ are installed as pushd_ctl, pushd_client and pushd_knife, so a
node's site-packages gains no generic top-level names such as "client".
"""

from setuptools import find_packages, setup

PACKAGE_ROOTS = {
    "pushd": "pushd",
    "pushd_ctl": "ctl",
    "pushd_client": "client",
    "pushd_knife": "knife",
    "pushd_bench": "bench",
}

packages: list[str] = []
for name, folder in PACKAGE_ROOTS.items():
    packages.append(name)
    packages.extend(f"{name}.{sub}" for sub in find_packages(folder))

setup(packages=packages, package_dir=PACKAGE_ROOTS, include_package_data=True)
