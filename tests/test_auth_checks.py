"""System checks for auth settings: E008 for invalid options, W004 for an unset token_env;
no check resolves credentials."""

from __future__ import annotations

from typing import Any

import pytest

from appsync_events.auth import AuthBackend, connect_headers, iam
from appsync_events.checks import check_auth
from appsync_events.conf import get_api_config
from appsync_events.exceptions import AuthError

HOST = "example1234567890000.appsync-api.us-east-1.amazonaws.com"


class PickyAuth(AuthBackend):
    """A custom backend whose constructor needs an option it was not given."""

    mode = "AWS_LAMBDA"

    def __init__(self, api: Any, *, audience: str) -> None:
        super().__init__(api)


def run(settings: Any, auth: dict[str, Any]) -> list[tuple[str, str]]:
    """Configure one alias with ``auth`` and return (id, message) of every check message."""
    settings.APPSYNC_EVENTS = {"default": {"HTTP_URL": f"https://{HOST}/event", "AUTH": auth}}
    return [(m.id or "", m.msg) for m in check_auth()]


@pytest.mark.parametrize(
    ("auth", "fragment"),
    [
        ({"API_KEY": {"api_key": ""}}, "needs the API key"),
        ({"API_KEY": {"api_key": "da2-x", "region": "x"}}, "unknown option(s) region"),
        ({"AMAZON_COGNITO_USER_POOLS": {}}, "exactly one token source"),
        ({"OPENID_CONNECT": {"token": ""}}, "non-empty string"),
        ({"AWS_LAMBDA": {"token_callable": "tests.nowhere.f"}}, "cannot be imported"),
        ({"AWS_IAM": {"access_key_id": "AKID"}}, "go together"),
        ({"AWS_IAM": {"role": "x"}}, "unknown option(s) role"),
        ({"AWS_LAMBDA": {"BACKEND": "tests.nowhere.Backend"}}, "cannot be imported"),
        (
            {"AWS_LAMBDA": {"BACKEND": "tests.test_auth_checks.PickyAuth", "OPTIONS": {}}},
            "refused its options: TypeError",
        ),
    ],
)
def test_incomplete_auth_settings_are_errors_for_every_mode(settings, auth, fragment):
    """Each mode's incomplete or unknown options give an appsync_events.E008 error."""
    messages = run(settings, auth)
    assert [m[0] for m in messages] == ["appsync_events.E008"]
    assert fragment in messages[0][1]


def test_unset_token_env_is_a_warning(settings, monkeypatch):
    """A token_env variable unset at check time is a W004 warning naming it."""
    monkeypatch.delenv("APPSYNC_CHECK_TOKEN", raising=False)
    messages = run(settings, {"OPENID_CONNECT": {"token_env": "APPSYNC_CHECK_TOKEN"}})
    assert [m[0] for m in messages] == ["appsync_events.W004"]
    assert "APPSYNC_CHECK_TOKEN" in messages[0][1]
    monkeypatch.setenv("APPSYNC_CHECK_TOKEN", "now-it-is-set")
    assert run(settings, {"OPENID_CONNECT": {"token_env": "APPSYNC_CHECK_TOKEN"}}) == []


def test_iam_check_resolves_no_credentials(settings):
    """IAM with no credentials in the (isolated) chain passes the check, which resolves
    nothing; the first signature reports the missing credentials."""
    assert run(settings, {"AWS_IAM": {}}) == []
    api = get_api_config()
    with pytest.raises(AuthError, match="no AWS credentials found"):
        connect_headers(api)


class ExplodingSession:
    """A boto3 session stand-in that fails the test if anything asks it for credentials."""

    created = 0

    def __init__(self) -> None:
        type(self).created += 1

    def get_credentials(self) -> None:
        raise AssertionError("the check resolved credentials")

    def client(self, service_name: str, **kwargs: Any) -> Any:
        raise ConnectionError(f"no network for {service_name} here")


def test_iam_check_with_role_arn_never_calls_sts(settings, monkeypatch):
    """check_auth with ``role_arn`` creates no session and calls no STS; the first
    signature then fails with a clear AuthError."""

    def no_boto3_session(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the check created a boto3 session")

    monkeypatch.setattr(iam.boto3, "Session", no_boto3_session)
    ExplodingSession.created = 0
    role = "arn:aws:iam::123456789012:role/publisher"
    assert run(settings, {"AWS_IAM": {"role_arn": role}}) == []
    assert (
        run(
            settings,
            {
                "AWS_IAM": {
                    "role_arn": role,
                    "session_factory": "tests.test_auth_checks.ExplodingSession",
                }
            },
        )
        == []
    )
    assert ExplodingSession.created == 0
    with pytest.raises(AuthError) as info:
        connect_headers(get_api_config())
    assert "cannot read AWS credentials for the connect" in str(info.value)
    assert "ConnectionError: no network for sts here" in str(info.value)
    assert "mode=AWS_IAM" in str(info.value)
    assert ExplodingSession.created == 1


def test_iam_with_credentials_passes(settings, monkeypatch):
    """IAM credentials found in the environment make the check pass."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCHECK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "check-secret-key-xxxxxxxx")
    assert run(settings, {"AWS_IAM": True}) == []


def test_complete_settings_pass_and_secrets_stay_out_of_messages(settings):
    """Valid settings for all modes produce no message; a failing one never quotes a key."""
    assert (
        run(
            settings,
            {
                "API_KEY": "da2-checkpass000000000000000000",
                "AMAZON_COGNITO_USER_POOLS": "cognito-token-value",
                "OPENID_CONNECT": {"token_callable": "tests.test_auth_token.no_arguments"},
                "AWS_LAMBDA": {"token": "lambda-token", "cache": True},
                "AWS_IAM": {"access_key_id": "AKID", "secret_access_key": "secret-xxxxxxxx"},
            },
        )
        == []
    )
    messages = run(settings, {"API_KEY": {"api_key": "da2-secretvalue", "colour": "x"}})
    assert "da2-secretvalue" not in messages[0][1]


def test_check_auth_is_registered():
    """The app registers check_auth with Django's check framework."""
    from django.core.checks import registry

    registered: list[object] = list(registry.registry.get_checks())
    assert check_auth in registered
