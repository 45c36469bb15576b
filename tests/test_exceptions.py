"""Tests for appsync_events.exceptions: the tree, rendered context and pickling."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from appsync_events import exceptions as exc
from appsync_events.protocol import DecodeError

TREE = [
    (exc.ValidationError, (exc.AppSyncEventsError, ValueError)),
    (exc.InvalidChannelError, (exc.ValidationError, ValueError)),
    (exc.EventTooLargeError, (exc.ValidationError,)),
    (exc.EventEncodingError, (exc.ValidationError, TypeError)),
    (exc.ProtocolError, (exc.AppSyncEventsError,)),
    (DecodeError, (exc.ProtocolError,)),
    (exc.AuthError, (exc.AppSyncEventsError,)),
    (exc.TokenSourceError, (exc.AuthError,)),
    (exc.ConnectionFailed, (exc.AppSyncEventsError,)),
    (exc.HandshakeTimeout, (exc.ConnectionFailed,)),
    (exc.ConnectionRejected, (exc.ConnectionFailed,)),
    (exc.KeepAliveTimeout, (exc.ConnectionFailed,)),
    (exc.OperationError, (exc.AppSyncEventsError,)),
    (exc.SubscriptionError, (exc.OperationError,)),
    (exc.PublishError, (exc.OperationError,)),
    (exc.PartialPublishError, (exc.PublishError,)),
    (exc.OperationTimeout, (exc.OperationError,)),
    (exc.PublishCancelled, (exc.AppSyncEventsError,)),
    (exc.ConfigurationError, (ImproperlyConfigured,)),
    (exc.ImproperlyInstalled, (exc.ConfigurationError, ImportError)),
]


@pytest.mark.parametrize(("cls", "bases"), TREE, ids=lambda v: getattr(v, "__name__", ""))
def test_tree(cls: type[BaseException], bases: tuple[type[BaseException], ...]) -> None:
    """Each error sits where the documented tree puts it."""
    for base in bases:
        assert issubclass(cls, base)


def test_configuration_errors_are_outside_the_root() -> None:
    """ConfigurationError is ImproperlyConfigured and never an AppSyncEventsError."""
    assert not issubclass(exc.ConfigurationError, exc.AppSyncEventsError)
    assert not issubclass(exc.ImproperlyInstalled, exc.AppSyncEventsError)
    with pytest.raises(ImproperlyConfigured):
        raise exc.ConfigurationError("bad", api="default", key="AUTH")


def test_every_public_name_is_exported() -> None:
    """__all__ lists every exception class the module defines."""
    defined = {
        name
        for name, value in vars(exc).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == exc.__name__
    }
    assert defined == set(exc.__all__)


RENDER = [
    (exc.AppSyncEventsError("Boom"), "Boom"),
    (exc.AppSyncEventsError("Boom", api="eu"), "Boom (api='eu')"),
    (exc.AppSyncEventsError("Boom", channel="/a/b"), "Boom (channel='/a/b')"),
    (
        exc.SubscriptionError(
            "Subscribe refused",
            api="default",
            channel="/chat/*",
            errors=[{"errorType": "UnauthorizedException", "message": "Nope"}],
            operation_id="s1",
        ),
        "Subscribe refused (api='default', channel='/chat/*'): UnauthorizedException: Nope",
    ),
    (
        exc.PublishError(
            "Publish refused",
            errors=[{"errorType": "BadRequest"}, {"code": "Throttled", "message": "slow"}, {}],
            status=400,
        ),
        "Publish refused: BadRequest; Throttled: slow; Error",
    ),
    (
        exc.AuthError("No token", mode="AWS_LAMBDA", operation="publish"),
        "No token [mode=AWS_LAMBDA, operation=publish]",
    ),
    (exc.AuthError("No token", mode="AWS_IAM"), "No token [mode=AWS_IAM]"),
    (exc.TokenSourceError("Token callable raised", api="eu"), "Token callable raised (api='eu')"),
    (
        exc.PartialPublishError(
            "Publish failed part-way", accepted=[0, 1, 2], not_sent=(3, 4), channel="/a"
        ),
        "Publish failed part-way (channel='/a') [accepted indices: [0, 1, 2]; not sent: [3, 4]]",
    ),
]


@pytest.mark.parametrize(("error", "text"), RENDER, ids=lambda v: type(v).__name__)
def test_str_renders_context(error: Exception, text: str) -> None:
    """str() renders the alias, channel, AWS errors and class-specific context."""
    assert str(error) == text


def test_attributes_are_kept() -> None:
    """Structured context stays available as attributes."""
    error = exc.SubscriptionError(
        "x", api="a", channel="/c", errors=[{"errorType": "T"}, {"message": "m"}], operation_id="o"
    )
    assert (error.api, error.channel, error.operation_id) == ("a", "/c", "o")
    assert error.error_types == ("T", "")
    assert error.message == "x"
    too_large = exc.EventTooLargeError("big", index=2, size=300_000, limit=240_000)
    assert (too_large.index, too_large.size, too_large.limit) == (2, 300_000, 240_000)
    assert exc.EventEncodingError("bad", index=1).index == 1
    assert exc.ConnectionRejected("no", status=401).status == 401
    assert exc.PublishError("no", status=503).status == 503
    partial = exc.PartialPublishError("p", accepted=[0], not_sent=[1], result="r")
    assert (partial.accepted, partial.not_sent, partial.result) == ((0,), (1,), "r")


def test_protocol_error_truncates_frames() -> None:
    """ProtocolError keeps at most 80 characters of a frame, and bytes as a short repr."""
    long_text = exc.ProtocolError("bad", frame="x" * 500)
    assert long_text.frame == "x" * 77 + "..."
    exact = exc.ProtocolError("bad", frame="y" * 80)
    assert exact.frame == "y" * 80
    binary = exc.ProtocolError("bad", frame=b"\x00" * 500)
    assert binary.frame == repr(b"\x00" * 80)
    for frame in (bytearray(b"z" * 200), memoryview(b"z" * 200)):
        assert exc.ProtocolError("bad", frame=frame).frame == repr(b"z" * 80)  # type: ignore[arg-type]
    assert exc.ProtocolError("bad").frame is None
    assert "x" * 80 not in str(long_text)


def test_configuration_error_attributes() -> None:
    """ConfigurationError carries alias, key and check id; E001 by default."""
    error = exc.ConfigurationError("msg", api="eu", key="AUTH")
    assert (error.api, error.key, error.check_id) == ("eu", "AUTH", "appsync_events.E001")
    assert str(error) == "msg"


def test_improperly_installed_says_what_to_install() -> None:
    """ImproperlyInstalled names the package and the exact pip line, under E011."""
    error = exc.ImproperlyInstalled(missing_package="botocore", install_extra="iam")
    assert error.missing_package == "botocore"
    assert error.check_id == "appsync_events.E011"
    assert 'pip install "django-appsync-events[iam]"' in str(error)
    with pytest.raises(ImportError):
        raise error


def test_validation_error_is_a_value_error() -> None:
    """Callers catching ValueError also catch our validation errors."""
    with pytest.raises(ValueError, match="nope"):
        raise exc.InvalidChannelError("nope", channel="/a//b")
    with pytest.raises(TypeError):
        raise exc.EventEncodingError("not JSON", index=0)


PICKLED: list[Any] = [
    exc.AppSyncEventsError("m", api="a", channel="/c", errors=[{"errorType": "T"}]),
    exc.InvalidChannelError("m", channel="/a//b"),
    exc.EventTooLargeError("m", index=1, size=2, limit=1, api="a"),
    exc.EventEncodingError("m", index=3),
    exc.ProtocolError("m", frame=b"\x00\x01"),
    DecodeError("m", reason="unknown_type", frame="{}", message_type="x", message_id="i"),
    exc.AuthError("m", operation="connect", mode="API_KEY"),
    exc.ConnectionRejected("m", status=401),
    exc.SubscriptionError("m", operation_id="s"),
    exc.PartialPublishError("m", accepted=[0], not_sent=[1], status=500),
    exc.ConfigurationError("m", api="a", key="K", check_id="appsync_events.E004"),
    exc.ImproperlyInstalled(missing_package="botocore", install_extra="iam"),
]


@pytest.mark.parametrize("error", PICKLED, ids=lambda v: type(v).__name__)
def test_errors_pickle_with_their_context(error: Exception) -> None:
    """Every error survives pickling (parallel test runners, multiprocessing) intact."""
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own data
    assert type(copy) is type(error)
    assert vars(copy) == vars(error)
    assert copy.args == error.args
    assert str(copy) == str(error)
