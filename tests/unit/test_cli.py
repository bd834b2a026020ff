"""The ``flowblock`` command: subcommands, configuration precedence, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowblock.cli import main
from flowblock.config import ENVIRONMENT, config_from_environment
from flowblock.identity import load_wallet, wallet_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_subcommand(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("demo", "network", "identity"):
        assert f"\n{command}\n" in out


@pytest.mark.parametrize("command", [["network", "init"], ["identity", "issue"], ["demo"]])
def test_each_subcommand_has_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert "--data-dir" in out


def test_help_all_documents_config_traits(capsys):
    code, out, _ = run(capsys, "network", "init", "--help-all")
    assert code == 0
    assert "--NetworkInitApp.organisations" in out
    assert "--FlowBlockApp.data_dir" in out


def test_identity_issue_writes_a_wallet_with_the_role(capsys, data_dir):
    assert run(capsys, "network", "init", "--data-dir", str(data_dir))[0] == 0
    code, out, err = run(
        capsys,
        "identity",
        "issue",
        "carol",
        "--org",
        "University",
        "--role",
        "researcher",
        "--data-dir",
        str(data_dir),
    )
    assert (code, err) == (0, "")
    path = wallet_path(data_dir, "University", "carol")
    assert str(path) in out
    assert load_wallet(path).role == "researcher"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["identty"], "did you mean 'identity'?"),
        (
            ["identity", "issue", "x", "--org", "Nowhere", "--role", "patient"],
            "organisation 'Nowhere' does not exist",
        ),
        (
            ["identity", "issue", "x", "--org", "Hospital", "--role", "wizard"],
            "--role must be one of patient, researcher",
        ),
        (
            ["identity", "issue", "x", "--org", "Hospital", "--role", "peer"],
            "--role must be one of patient, researcher",
        ),
        (["identity", "issue", "--org", "Hospital", "--role", "patient"], "must be given NAME"),
        (["identity", "issue", "x", "--role", "patient"], "--org must be given"),
        (["demo", "--role", "x"], "--role is not an option"),
        (["identity", "show", "/no/such/wallet"], "no wallet at /no/such/wallet"),
        (["network", "init", "--org", "bad org"], "organisation name must be"),
        (["executor", "--org", "Hospital"], "FlowBlock is not running for"),
        (
            [
                "executor",
                "--gateway",
                "127.0.0.1:1",
                "--s3-endpoint",
                "http://127.0.0.1:1",
                "--s3-credentials",
                "/no/such/credentials.json",
            ],
            "the S3 credentials of 'Hospital' at /no/such/credentials.json are missing",
        ),
        (
            [
                "executor",
                "--gateway",
                "127.0.0.1:1",
                "--s3-endpoint",
                "http://127.0.0.1:1",
                "--wallet",
                "/no/such/wallet",
            ],
            "no wallet at /no/such/wallet",
        ),
        (["status"], "FlowBlock is not running for"),
        (["down"], "FlowBlock is not running for"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(capsys, data_dir, argv, message):
    run(capsys, "network", "init", "--data-dir", str(data_dir))
    before = sorted(data_dir.rglob("*"))
    code, _, err = run(capsys, *argv, "--data-dir", str(data_dir))
    assert code != 0
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(data_dir.rglob("*")) == before


def test_environment_maps_to_traits():
    config = config_from_environment({"FLOWBLOCK_DATA_DIR": "/srv/fb", "UNRELATED": "x"})
    assert config.FlowBlockApp.data_dir == "/srv/fb"
    assert all(name.startswith("FLOWBLOCK_") for name in ENVIRONMENT)


def test_precedence_is_file_then_environment_then_command_line(capsys, tmp_path: Path, monkeypatch):
    from_file, from_env, from_cli = (tmp_path / name for name in ("file", "env", "cli"))
    config = tmp_path / "flowblock_config.py"
    config.write_text(
        "c.NetworkInitApp.organisations = ['FileOrg']\n"
        f"c.FlowBlockApp.data_dir = {str(from_file)!r}\n"
    )
    monkeypatch.setenv("FLOWBLOCK_CONFIG", str(config))

    run(capsys, "network", "init")
    assert (from_file / "organizations" / "FileOrg").is_dir()

    monkeypatch.setenv("FLOWBLOCK_DATA_DIR", str(from_env))
    run(capsys, "network", "init")
    assert (from_env / "organizations" / "FileOrg").is_dir()

    run(capsys, "network", "init", "--data-dir", str(from_cli), "--org", "CliOrg")
    assert (from_cli / "organizations" / "CliOrg").is_dir()
    assert not (from_cli / "organizations" / "FileOrg").exists()


def test_config_file_in_the_data_dir_is_loaded(capsys, data_dir):
    (data_dir / "flowblock_config.py").write_text("c.NetworkInitApp.organisations = ['Clinic']\n")
    run(capsys, "network", "init", "--data-dir", str(data_dir))
    assert (data_dir / "organizations" / "Clinic").is_dir()


def test_a_missing_config_file_is_an_error(capsys, tmp_path):
    code, _, err = run(capsys, "network", "init", "--config", str(tmp_path / "nope.py"))
    assert code == 1
    assert "does not exist" in err


def test_identity_list_shows_everyone(capsys, demo_world):
    code, out, _ = run(capsys, "identity", "list", "--data-dir", str(demo_world.data_dir))
    assert code == 0
    assert "alice" in out and "researcher" in out and "orderer0" in out
