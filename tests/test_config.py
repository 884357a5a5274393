from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ganglion.config import Config, ConfigError, load_config, require_an_interface

MATRIX = (
    "matrix:\n"
    "  homeserver: https://matrix.example.org\n"
    "  user_id: '@bot:example.org'\n"
    "  access_token: syt_file\n"
    "  device_id: BOTDEVICE\n"
    "  allowed_users: ['@me:example.org']\n"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config, source = load_config(None, environ={})
    assert source is None
    assert (config.web.host, config.web.port, config.web.enabled) == ("127.0.0.1", 8080, True)
    assert config.matrix.enabled is False
    assert config.llm.base_url == "http://127.0.0.1:11434/v1"
    assert config.llm.max_concurrency == 8
    assert config.shutdown.grace_seconds == 10
    assert config.data_dir == tmp_path / "data"


def test_example_config_documents_exactly_the_defaults() -> None:
    example = Path(__file__).parents[1] / "config.yaml.example"
    config, _ = load_config(example, environ={})
    defaults = Config()
    assert config.model_dump(exclude={"data_dir", "logging"}) == defaults.model_dump(
        exclude={"data_dir", "logging"}
    )
    assert config.data_dir == example.parent / "data"
    assert config.logging.dir == example.parent / "logs"
    assert config.logging.level == defaults.logging.level


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data_dir: mydata\nlogging: {dir: mylogs}\n")
    config, _ = load_config(path, environ={})
    assert config.data_dir == tmp_path / "mydata"
    assert config.logging.dir == tmp_path / "mylogs"


def test_unknown_key_names_the_field_path(tmp_path: Path) -> None:
    path = write(tmp_path, "llm:\n  timeouts:\n    conect: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"{path}: llm.timeouts.conect: unknown option"


def test_wrong_type_names_the_field_path(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  port: eighty\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: web.port: ")
    assert "integer" in message


def test_missing_required_field_when_matrix_is_enabled(tmp_path: Path) -> None:
    path = write(tmp_path, "matrix:\n  enabled: true\n  allowed_users: ['@me:x']\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == (
        f"{path}: matrix: matrix.homeserver is required; matrix.user_id is required; "
        "matrix.access_token is required (or set matrix.enabled: false)"
    )


def test_a_matrix_section_with_the_three_names_turns_matrix_on(tmp_path: Path) -> None:
    path = write(tmp_path, MATRIX)
    config, _ = load_config(path, environ={})
    assert config.matrix.enabled
    assert config.matrix.store_dir is None  # <data_dir>/matrix, decided at start-up
    off, _ = load_config(write(tmp_path, MATRIX + "  enabled: false\n"), environ={})
    assert not off.matrix.enabled


def test_matrix_device_id_is_required(tmp_path: Path) -> None:
    path = write(tmp_path, MATRIX.replace("  device_id: BOTDEVICE\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"{path}: matrix: matrix.device_id is required"


def test_matrix_access_token_comes_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MATRIX.replace("  access_token: syt_file\n", ""))
    config, _ = load_config(path, environ={"GANGLION_MATRIX_ACCESS_TOKEN": "syt_env"})
    assert config.matrix.access_token is not None
    assert config.matrix.access_token.get_secret_value() == "syt_env"
    # Without a matrix section the variable alone does not turn Matrix on.
    bare, _ = load_config(write(tmp_path, "{}\n"), environ={"GANGLION_MATRIX_ACCESS_TOKEN": "x"})
    assert not bare.matrix.enabled


def test_matrix_store_dir_is_resolved_against_the_config_file(tmp_path: Path) -> None:
    config, _ = load_config(write(tmp_path, MATRIX + "  store_dir: keys\n"), environ={})
    assert config.matrix.store_dir == tmp_path / "keys"


def test_no_interface_at_all_is_refused(tmp_path: Path) -> None:
    config, _ = load_config(write(tmp_path, "web: {enabled: false}\n"), environ={})
    with pytest.raises(ConfigError, match="no interface is on"):
        require_an_interface(config)
    matrix_only, _ = load_config(write(tmp_path, MATRIX + "web: {enabled: false}\n"), environ={})
    require_an_interface(matrix_only)


def test_matrix_with_no_allowed_users_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "matrix: {homeserver: 'http://h', user_id: '@b:h', access_token: t, device_id: D}\n",
    )
    with pytest.raises(ConfigError, match="allow_all_users"):
        load_config(path, environ={})


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  port: [8080\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"{path}: YAML syntax error (line ")


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the config file"):
        load_config(missing, environ={})


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path, environ={})


def test_unknown_timezone(tmp_path: Path) -> None:
    path = write(tmp_path, "timezone: Mars/Olympus\n")
    with pytest.raises(ConfigError, match="timezone: unknown IANA timezone"):
        load_config(path, environ={})


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "llm: {api_key: from-file}\n")
    environ = {
        "GANGLION_LLM_API_KEY": "from-env",
        "GANGLION_WEB_TOKEN": "web-secret",
        "GANGLION_MATRIX_ACCESS_TOKEN": "mx-secret",
    }
    config, _ = load_config(path, environ=environ)
    assert config.llm.api_key is not None and config.llm.api_key.get_secret_value() == "from-env"
    assert config.web.token is not None and config.web.token.get_secret_value() == "web-secret"
    assert "from-env" not in repr(config)


def test_non_loopback_web_without_token_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "web: {host: 0.0.0.0}\n")
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_config(path, environ={})
    token = secrets.token_hex(16)  # the weakest random token allowed: 128 bits
    config, _ = load_config(path, environ={"GANGLION_WEB_TOKEN": token})
    assert config.web.host == "0.0.0.0"


@pytest.mark.parametrize(
    "token",
    [
        "a" * 36,  # issue 26 row 9: only the length was checked
        "password1234" * 3,
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "0123456789" * 4,
    ],
)
def test_a_guessable_token_on_a_non_loopback_web_chat_is_refused(
    tmp_path: Path, token: str
) -> None:
    path = write(tmp_path, "web: {host: 0.0.0.0}\n")
    with pytest.raises(ConfigError, match="too easy to guess") as caught:
        load_config(path, environ={"GANGLION_WEB_TOKEN": token})
    assert "secrets.token_urlsafe(32)" in str(caught.value)
    assert token not in str(caught.value)


def test_random_tokens_of_every_allowed_form_pass_the_strength_check() -> None:
    from ganglion.entropy import MIN_TOKEN_BITS, estimated_bits

    made = [secrets.token_hex(16) for _ in range(500)] + [
        secrets.token_urlsafe(32) for _ in range(500)
    ]
    assert min(estimated_bits(token) for token in made) >= MIN_TOKEN_BITS


def test_a_short_token_on_a_non_loopback_web_chat_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "web: {host: 0.0.0.0, token: x}\n")
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_config(path, environ={})
    loopback = write(tmp_path, "web: {token: x}\n")
    assert load_config(loopback, environ={})[0].web.token is not None


def test_allowed_origins_must_be_origins(tmp_path: Path) -> None:
    path = write(tmp_path, "web: {allowed_origins: ['https://chat.example.org/app']}\n")
    with pytest.raises(ConfigError, match=r"web.allowed_origins.*not an origin"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("localhost:9464", ("localhost", 9464)),
        ("[::1]:9464", ("::1", 9464)),
    ],
)
def test_metrics_bind_takes_a_loopback_address(
    tmp_path: Path, bind: str, address: tuple[str, int]
) -> None:
    path = write(tmp_path, f"web: {{metrics_bind: '{bind}'}}\n")
    assert load_config(path, environ={})[0].web.metrics_address == address
    assert load_config(write(tmp_path, "{}\n"), environ={})[0].web.metrics_address is None


@pytest.mark.parametrize(
    ("bind", "says"),
    [
        ("0.0.0.0:9464", "0.0.0.0 is not a loopback address"),
        ("192.168.1.5:9464", "192.168.1.5 is not a loopback address"),
        ("metrics.example.org:9464", "is not a loopback address"),
        ("127.0.0.1", "is not an address: give host:port"),
        ("127.0.0.1:99999", "is not an address"),
    ],
)
def test_metrics_bind_refuses_anything_but_loopback(tmp_path: Path, bind: str, says: str) -> None:
    path = write(tmp_path, f"web: {{metrics_bind: '{bind}'}}\n")
    with pytest.raises(ConfigError, match=rf"config.yaml: web.metrics_bind: .*{says}"):
        load_config(path, environ={})


def test_group_rooms_are_set_for_all_rooms_and_per_room(tmp_path: Path) -> None:
    text = (
        MATRIX + "  group_rooms: always\n  rooms: {'!quiet:example.org': {group_rooms: mentions}}\n"
    )
    config, _ = load_config(write(tmp_path, text), environ={})
    assert config.matrix.group_rooms == "always"
    assert config.matrix.rooms["!quiet:example.org"].group_rooms == "mentions"
    assert load_config(write(tmp_path, MATRIX), environ={})[0].matrix.group_rooms == "mentions"


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("group_rooms: sometimes", "matrix.group_rooms: Input should be 'mentions' or 'always'"),
        (
            "rooms: {'!a:example.org': {group_rooms: never}}",
            "matrix.rooms.!a:example.org.group_rooms: Input should be 'mentions' or 'always'",
        ),
        (
            "rooms: {'!a:example.org': {mentions: true}}",
            "matrix.rooms.!a:example.org.mentions: unknown option",
        ),
        ("rooms: {'general': {}}", "matrix.rooms: 'general' is not a room id"),
    ],
)
def test_a_wrong_group_room_rule_names_its_field_path(
    tmp_path: Path, option: str, says: str
) -> None:
    path = write(tmp_path, MATRIX + f"  {option}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"{path}: {says}")
