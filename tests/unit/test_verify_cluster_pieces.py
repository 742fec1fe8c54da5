"""The pure pieces of the production-shaped verification cluster: systemd units read as systemd reads them, the
shipped examples edited only where a site (or a container) must, and the REST helpers."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import pytest

from slurm_factory.config import Settings
from slurm_factory.plan import make_plan
from slurm_factory.request import make_request
from slurm_factory.verify.cluster_config import (
    CGROUP_FREE,
    cluster_cgroup_conf,
    cluster_slurm_conf,
    cluster_slurmdbd_conf,
    value_of,
    with_settings,
)
from slurm_factory.verify.rest import forged_token, newest_data_parser
from slurm_factory.verify.units import UnitError, expand_exec, parse_environment_file, parse_unit


def _shipped(name: str) -> str:
    """A file of the native trixie artifact as the plan renders it."""
    settings = Settings(home=Path(tempfile.mkdtemp()) / "home", project_name="sf-test")
    plan = make_plan(make_request(slurm_version="24.11.5", toolchain="trixie", engine="native"), settings)
    return (
        plan.artifact_files[name]
        .content.replace("@SLURM_ROOT@", "/srv/t")
        .replace("@SLURM_CONF_DIR@", "/etc/slurm")
        .replace("@SLURM_CONF@", "/etc/slurm/slurm.conf")
    )


def test_the_shipped_slurmd_unit_takes_its_options_from_the_options_file() -> None:
    unit = _shipped("share/slurm-factory/systemd/slurmd.service.in")
    files = {"/etc/default/slurmd": "# site options\nSLURMD_OPTIONS='--conf-server ctl:6817 -v'\n"}

    service = parse_unit("slurmd.service", unit, files.get)

    assert service.argv == (
        "/srv/t/sbin/slurmd", "--systemd", "-d", "/srv/t/sbin/slurmstepd", "--conf-server", "ctl:6817", "-v",
    )  # fmt: skip
    assert service.user is None and service.service_type == "notify"
    assert service.runtime_directories == ("slurm",)
    assert service.environment["SLURM_CONF"] == "/etc/slurm/slurm.conf"


def test_without_an_options_file_the_variable_expands_to_nothing() -> None:
    unit = _shipped("share/slurm-factory/systemd/slurmctld.service.in")

    service = parse_unit("slurmctld.service", unit, lambda path: None)

    assert service.argv == ("/srv/t/sbin/slurmctld", "--systemd")
    assert (service.user, service.group) == ("slurm", "slurm")
    assert service.runtime_directories == ("slurmctld",)


def test_the_shipped_slurmrestd_unit_runs_as_its_own_user_with_jwt_on_a_local_socket() -> None:
    service = parse_unit(
        "slurmrestd.service", _shipped("share/slurm-factory/systemd/slurmrestd.service.in"), lambda path: None
    )

    assert service.user == "slurmrestd"
    assert service.environment["SLURM_JWT"] == "daemon"
    assert service.environment["SLURMRESTD_LISTEN"] == "unix:/run/slurmrestd/slurmrestd.socket"


def test_an_options_file_wins_over_the_units_environment() -> None:
    unit = "[Service]\nEnvironment=A=unit B=kept\nEnvironmentFile=-/etc/default/x\nExecStart=/bin/x $A ${B}\n"

    service = parse_unit("x.service", unit, {"/etc/default/x": "A=file\n"}.get)

    assert service.argv == ("/bin/x", "file", "kept")


def test_a_required_environment_file_that_is_missing_is_an_error() -> None:
    unit = "[Service]\nEnvironmentFile=/etc/default/x\nExecStart=/bin/x\n"
    with pytest.raises(UnitError, match="EnvironmentFile=/etc/default/x does not exist"):
        parse_unit("x.service", unit, lambda path: None)


def test_braced_variables_stay_one_word_and_bare_ones_split() -> None:
    environment = {"OPTS": "-a -b", "NAME": "two words"}
    assert expand_exec("/bin/x $OPTS --name=${NAME} $UNSET", environment) == (
        "/bin/x", "-a", "-b", "--name=two words",
    )  # fmt: skip


def test_environment_files_take_quotes_comments_and_export() -> None:
    text = "# comment\n; also\nexport A=\"one two\"\nB='x'\nC=\nnot an assignment\n"
    assert parse_environment_file(text) == {"A": "one two", "B": "x", "C": ""}


def test_a_unit_without_exec_start_is_an_error() -> None:
    with pytest.raises(UnitError, match="no ExecStart"):
        parse_unit("x.service", "[Unit]\nDescription=x\n[Service]\nType=simple\n", lambda path: None)


def test_the_cluster_slurm_conf_keeps_the_shipped_settings_and_changes_only_names_nodes_and_cgroups() -> None:
    example = _shipped("etc/slurm.conf.example")

    edited = cluster_slurm_conf(example, "n1", ("n1", "n2"), memory_mb=500)

    for key in ("SlurmUser", "AuthAltTypes", "AccountingStorageEnforce", "SlurmctldParameters", "PrologFlags",
                "SelectTypeParameters", "AuthType"):  # fmt: skip
        assert value_of(edited, key) == value_of(example, key), key
    assert value_of(edited, "SlurmctldHost") == "n1"
    assert value_of(edited, "AccountingStorageHost") == "n1"
    for key, value in CGROUP_FREE.items():
        assert value_of(edited, key) == value
    assert edited.count("NodeName=") == 1 and "NodeName=n1,n2 CPUs=1 RealMemory=500" in edited
    assert edited.count("PartitionName=") == 1


def test_the_cluster_slurmdbd_conf_points_at_the_database_with_its_password() -> None:
    edited = cluster_slurmdbd_conf(_shipped("etc/slurmdbd.conf.example"), "n1", "db", password="s3cret")

    assert (value_of(edited, "StorageHost"), value_of(edited, "StoragePass"), value_of(edited, "DbdHost")) == (
        "db", "s3cret", "n1",
    )  # fmt: skip
    assert value_of(edited, "StorageUser") == "slurm"


def test_the_cluster_cgroup_conf_disables_cgroups_and_drops_the_constraints() -> None:
    edited = cluster_cgroup_conf(_shipped("etc/cgroup.conf.example"))
    assert value_of(edited, "CgroupPlugin") == "disabled"
    assert value_of(edited, "ConstrainCores") is None


def test_settings_are_case_insensitive_replaced_once_and_appended_when_missing() -> None:
    text = "slurmuser=root\nSlurmUser=again\n# SlurmUser=comment\n"
    edited = with_settings(text, {"SlurmUser": "slurm", "New": "1"})
    assert edited == "SlurmUser=slurm\n# SlurmUser=comment\nNew=1\n"


def test_the_newest_data_parser_is_chosen() -> None:
    listing = "slurmrestd: data_parser/v0.0.40\nslurmrestd: data_parser/v0.0.42\nslurmrestd: data_parser/v0.0.41\n"
    assert newest_data_parser(listing) == "v0.0.42"
    assert newest_data_parser("nothing") is None


def test_a_forged_token_is_a_well_formed_hs256_jwt_for_the_user() -> None:
    header, payload, signature = forged_token("alice").split(".")

    def decoded(part: str) -> dict[str, object]:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    assert decoded(header) == {"alg": "HS256", "typ": "JWT"}
    assert decoded(payload)["sun"] == "alice"
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32
    assert forged_token("alice") != forged_token("alice"), "each one is signed with a new random key"
