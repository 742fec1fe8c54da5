"""Settings: environment defaults, the cache layout of docs/reference/settings.md, and project-name validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_factory.config import DEFAULT_PROJECT_NAME, Settings, load_settings
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError

# docs/reference/settings.md's tree under ~/.slurm-factory, in its order.
# docs/reference/settings.md
SPEC_CACHE_DIRS = (
    "builds", "spack-buildcache", "spack-sourcecache", "binary_index", "spack-concretizations", "ccache", "logs",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Start from no slurm-factory variables and a throwaway HOME, whatever the caller's shell exports."""
    for name in ("IF_PROJECT_NAME", "SLURM_FACTORY_HOME", "SPACK_JOBS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# --- project name --------------------------------------------------------------------------------------------------


def test_project_name_defaults_to_slurm_factory() -> None:
    assert DEFAULT_PROJECT_NAME == "slurm-factory"
    assert Settings().project_name == "slurm-factory"
    assert load_settings().project_name == "slurm-factory"


def test_project_name_default_comes_from_if_project_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IF_PROJECT_NAME", "production")
    assert Settings().project_name == "production"
    assert load_settings().project_name == "production"


def test_empty_if_project_name_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IF_PROJECT_NAME", "")
    assert load_settings().project_name == "slurm-factory"


def test_explicit_project_name_wins_over_if_project_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IF_PROJECT_NAME", "from-env")
    assert load_settings("explicit").project_name == "explicit"
    assert Settings(project_name="explicit").project_name == "explicit"


@pytest.mark.parametrize("name", ["a", "0", "prod", "ci-42", "team_a.slurm-v2", "a" * 63])
def test_docker_safe_project_names_are_accepted(name: str) -> None:
    assert load_settings(name).project_name == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("Production", id="uppercase"),
        pytest.param("my project", id="space"),
        pytest.param("-leading-dash", id="leading-dash"),
        pytest.param("_leading-underscore", id="leading-underscore"),
        pytest.param(".leading-dot", id="leading-dot"),
        pytest.param("team/slurm", id="slash"),
        pytest.param("a:b", id="colon"),
        pytest.param("a" * 64, id="too-long"),
        pytest.param("naïve", id="non-ascii"),
        pytest.param(
            "name\n",
            id="trailing-newline",
        ),
    ],
)
def test_invalid_project_name_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(name)
    assert caught.value.exit_code == EXIT_USAGE
    message = str(caught.value)
    assert "--project-name" in message
    assert repr(name) in message


@pytest.mark.parametrize("name", ["My Project", "-bad", "team/slurm"])
def test_invalid_if_project_name_is_a_configuration_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IF_PROJECT_NAME", name)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.exit_code == EXIT_USAGE


def test_settings_is_frozen() -> None:
    settings = Settings(project_name="frozen")
    with pytest.raises(ValueError):
        settings.project_name = "other"


# --- home ----------------------------------------------------------------------------------------------------------


def test_home_defaults_to_dot_slurm_factory_in_the_user_home(tmp_path: Path) -> None:
    assert Settings().home == tmp_path / "home" / ".slurm-factory"


def test_home_comes_from_slurm_factory_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_HOME", str(tmp_path / "elsewhere"))
    assert load_settings().home == tmp_path / "elsewhere"


def test_slurm_factory_home_expands_a_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_HOME", "~/factory-cache")
    assert load_settings().home == tmp_path / "home" / "factory-cache"


def test_empty_slurm_factory_home_falls_back_to_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_HOME", "")
    assert load_settings().home == tmp_path / "home" / ".slurm-factory"


def test_explicit_home_wins_over_slurm_factory_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_HOME", str(tmp_path / "from-env"))
    assert Settings(home=tmp_path / "explicit").home == tmp_path / "explicit"


# --- jobs ----------------------------------------------------------------------------------------------------------


def test_jobs_default_to_the_cpu_count() -> None:
    assert Settings().jobs == (os.cpu_count() or 1)


@pytest.mark.parametrize(("value", "jobs"), [("1", 1), ("8", 8), ("64", 64), (" 4 ", 4)])
def test_jobs_come_from_spack_jobs(value: str, jobs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACK_JOBS", value)
    assert load_settings().jobs == jobs


def test_empty_spack_jobs_falls_back_to_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACK_JOBS", "")
    assert load_settings().jobs == (os.cpu_count() or 1)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "2.5", "four", "1e3"])
def test_invalid_spack_jobs_is_a_configuration_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACK_JOBS", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.exit_code == EXIT_USAGE
    message = str(caught.value)
    assert "SPACK_JOBS" in message
    assert repr(value) in message


def test_explicit_jobs_below_one_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^jobs 0 is invalid: Input should be greater than or equal to 1"):
        Settings(jobs=0)


def test_a_bad_project_name_through_the_python_api_is_a_configuration_error_naming_the_argument() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings(project_name="Bad Name")
    assert raised.value.message.startswith("project_name 'Bad Name' is invalid: it must be lowercase")
    assert "Value error" not in raised.value.message


def test_a_bad_project_name_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IF_PROJECT_NAME", "Bad Name")
    with pytest.raises(ConfigurationError, match=r"^IF_PROJECT_NAME 'Bad Name' is invalid: it must be lowercase"):
        load_settings()
    with pytest.raises(ConfigurationError, match=r"^--project-name 'Also Bad' is invalid"):
        load_settings("Also Bad")


def test_a_relative_home_is_made_absolute_against_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_FACTORY_HOME", "relhome")
    assert Settings().home == tmp_path / "relhome"
    assert Settings(home=Path("../other")).home == tmp_path.parent / "other"


def test_a_5000_character_project_name_is_echoed_shortened() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings(project_name="X" * 5000)
    assert len(raised.value.message) < 400
    assert "(5000 characters)" in raised.value.message


# --- cache layout --------------------------------------------------------------------------------------------------


def test_cache_dirs_are_named_exactly_as_in_spec(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.builds_dir == tmp_path / "builds"
    assert settings.buildcache_dir == tmp_path / "spack-buildcache"
    assert settings.sourcecache_dir == tmp_path / "spack-sourcecache"
    assert settings.binary_index_dir == tmp_path / "binary_index"
    assert settings.concretizations_dir == tmp_path / "spack-concretizations"
    assert settings.ccache_dir == tmp_path / "ccache"
    assert settings.logs_dir == tmp_path / "logs"
    assert settings.cache_dirs() == [tmp_path / name for name in SPEC_CACHE_DIRS]


def test_cache_dirs_follow_slurm_factory_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_HOME", str(tmp_path / "moved"))
    settings = load_settings()
    assert all(directory.parent == tmp_path / "moved" for directory in settings.cache_dirs())
    assert settings.buildcache_dir == tmp_path / "moved" / "spack-buildcache"


def test_ensure_dirs_creates_every_cache_dir(tmp_path: Path) -> None:
    home = tmp_path / "not" / "yet" / "there"
    settings = Settings(home=home)
    settings.ensure_dirs()
    assert sorted(path.name for path in home.iterdir()) == sorted(SPEC_CACHE_DIRS)
    assert all((home / name).is_dir() for name in SPEC_CACHE_DIRS)


def test_ensure_dirs_is_idempotent_and_keeps_existing_content(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    artifact = settings.builds_dir / "slurm-25.11-noble-software.tar.gz"
    artifact.write_bytes(b"artifact")
    settings.ensure_dirs()
    assert artifact.read_bytes() == b"artifact"
    assert all(directory.is_dir() for directory in settings.cache_dirs())


def test_settings_does_not_create_directories_by_itself(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "lazy")
    assert settings.builds_dir == tmp_path / "lazy" / "builds"
    assert not (tmp_path / "lazy").exists()
