"""The version check: the floors are pyproject.toml's, and an older TensorFlow or Keras gets the upgrade line."""

import re
import tomllib
from pathlib import Path

import pytest

from helpers.errors import VersionError
from helpers.machinery.versions import MINIMUM, UPGRADE, check_versions, installed_versions, release


def test_the_minimum_is_the_declared_floor():
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    floors = {m[1]: m[2] for m in (re.match(r"([a-z]+)>=([\d.]+)", r) for r in project["dependencies"]) if m}
    assert {package: floors[package] for package in MINIMUM} == MINIMUM
    for package, version in MINIMUM.items():
        assert f'"{package}>={version}"' in UPGRADE


def test_release_reads_the_numbers():
    assert release("2.16.2") == (2, 16, 2)
    assert release("3.10.0rc1") == (3, 10, 0)
    assert release("3.1.1") > release("3.1.0") and release("3.10.0") > release("3.9.9")


def test_the_installed_versions_pass():
    installed = installed_versions()
    assert all(installed.values()), installed
    check_versions(installed)


@pytest.mark.parametrize("installed", [{"tensorflow": "2.15.1", "keras": "2.15.0"},
                                       {"tensorflow": "2.16.2", "keras": "3.0.5"}])
def test_an_older_tensorflow_or_keras_gets_the_upgrade_line(installed):
    with pytest.raises(VersionError) as error:
        check_versions(installed)
    message = str(error.value)
    assert UPGRADE in message and "keras " + installed["keras"] in message
    assert ("tensorflow 2.15.1" in message) == installed["tensorflow"].startswith("2.15")


def test_a_package_that_is_not_installed_is_left_to_its_import():
    check_versions({"tensorflow": None, "keras": "3.15.1"})
