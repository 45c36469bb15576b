"""The control plane (appsync_events.control) against botocore's Stubber: the paths moto lacks.

moto (5.2) has no GetChannelNamespace, UpdateChannelNamespace or UpdateApi, so updates,
handler comparison and API auth changes are checked here with exact AppSync requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from appsync_events.config import APIConfig
from appsync_events.control import (
    IAM_ACTIONS,
    ControlPlane,
    appsync_client,
    declared_modes,
)
from appsync_events.exceptions import ConfigurationError, ControlPlaneError

API_ID = "abcdefghijklmnopqrstuvwxyz"
HOST = "prefixprefixprefixprefix01.appsync-api.us-east-1.amazonaws.com"


def config(**overrides: Any) -> APIConfig:
    """Return an alias holding an API key and IAM keys, with ``overrides`` on top."""
    mapping: dict[str, Any] = {
        "HTTP_URL": f"https://{HOST}/event",
        "API_ID": API_ID,
        "AUTH": {
            "API_KEY": "da2-tests00000000000000000000000",
            "AWS_IAM": {"access_key_id": "AKIDTEST", "secret_access_key": "not-a-secret"},
        },
        "NAMESPACES": {"chat": {}},
    }
    mapping.update(overrides)
    return APIConfig.from_mapping("default", mapping)


def modes(*names: str) -> list[dict[str, str]]:
    """Return auth modes in AppSync's shape."""
    return [{"authType": name} for name in names]


def event_config(
    providers: tuple[str, ...] = ("API_KEY", "AWS_IAM"),
    publish: tuple[str, ...] = ("API_KEY", "AWS_IAM"),
    subscribe: tuple[str, ...] = ("API_KEY", "AWS_IAM"),
    **extra: Any,
) -> dict[str, Any]:
    """Return an API's eventConfig as GetApi answers it."""
    return {
        "authProviders": modes(*providers),
        "connectionAuthModes": modes(*providers),
        "defaultPublishAuthModes": modes(*publish),
        "defaultSubscribeAuthModes": modes(*subscribe),
        **extra,
    }


def api(ec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Return a GetApi answer."""
    return {
        "api": {
            "apiId": API_ID,
            "name": "events",
            "dns": {"HTTP": HOST, "REALTIME": HOST.replace("appsync-api", "appsync-realtime-api")},
            "eventConfig": ec or event_config(),
            **extra,
        }
    }


def namespace(
    name: str, pub: tuple[str, ...], sub: tuple[str, ...], **extra: Any
) -> dict[str, Any]:
    """Return a channel namespace as AppSync describes it."""
    return {
        "apiId": API_ID,
        "name": name,
        "publishAuthModes": modes(*pub),
        "subscribeAuthModes": modes(*sub),
        **extra,
    }


@pytest.fixture
def stub() -> Iterator[tuple[Any, Stubber]]:
    """A real appsync client whose answers come from a Stubber (nothing leaves the process)."""
    client = boto3.client(
        "appsync",
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="not-a-secret",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_reads(
    stubber: Stubber, remote: list[dict[str, Any]], ec: dict[str, Any] | None = None
) -> None:
    """Queue the GetApi and ListChannelNamespaces answers every plan starts with."""
    stubber.add_response("get_api", api(ec), {"apiId": API_ID})
    stubber.add_response(
        "list_channel_namespaces", {"channelNamespaces": remote}, {"apiId": API_ID}
    )


def test_declared_modes_cover_connection_defaults_and_namespaces():
    """The modes the API must offer are the connection mode, the defaults and each namespace's."""
    cfg = config(
        AUTH={"API_KEY": "da2-tests00000000000000000000000"},
        DEFAULT_SUBSCRIBE_AUTH_MODES=["API_KEY"],
        NAMESPACES={
            "chat": {"SUBSCRIBE_AUTH_MODES": ["API_KEY", "AMAZON_COGNITO_USER_POOLS"]},
        },
    )
    assert declared_modes(cfg) == ("API_KEY", "AMAZON_COGNITO_USER_POOLS")


def test_iam_actions_name_every_operation_the_control_plane_calls():
    """Every AppSync operation the module calls is listed in IAM_ACTIONS (the documented policy)."""
    import re
    from pathlib import Path

    import appsync_events.control as module

    source = Path(module.__file__).read_text()
    called = set(
        re.findall(r'"((?:Get|List|Create|Update|Delete)(?:Api|ChannelNamespace)\w*)"', source)
    )
    assert called
    assert {f"appsync:{name}" for name in called} <= set(IAM_ACTIONS)


def test_in_step_when_namespace_modes_come_from_api_defaults(stub):
    """A namespace without modes of its own has the API's defaults, as the settings say."""
    client, stubber = stub
    expect_reads(stubber, [{"apiId": API_ID, "name": "chat"}])
    plan = ControlPlane(config(), client).plan()
    assert plan.in_sync
    assert plan.lines()[-1] == "  in step: nothing to change."


def test_changed_modes_update_the_namespace_and_keep_its_handlers(stub):
    """An auth mode drift is an UpdateChannelNamespace that sends back the handlers AWS has."""
    client, stubber = stub
    cfg = config(NAMESPACES={"chat": {"PUBLISH_AUTH_MODES": ["AWS_IAM"]}})
    expect_reads(stubber, [namespace("chat", ("API_KEY",), ("API_KEY", "AWS_IAM"))])
    handlers = {
        "onPublish": {
            "behavior": "DIRECT",
            "integration": {"dataSourceName": "fn", "lambdaConfig": {"invokeType": "EVENT"}},
        }
    }
    full = namespace(
        "chat",
        ("API_KEY",),
        ("API_KEY", "AWS_IAM"),
        codeHandlers="export function onPublish(ctx) {}",
        handlerConfigs=handlers,
    )
    control = ControlPlane(cfg, client)
    plan = control.plan()  # reads nothing more: the handlers are not compared
    stubber.assert_no_pending_responses()
    stubber.add_response(
        "get_channel_namespace", {"channelNamespace": full}, {"apiId": API_ID, "name": "chat"}
    )
    [change] = plan.changes
    assert change.kind == "update"
    assert change.differences == (
        "publish auth modes: AWS has API_KEY; the settings declare AWS_IAM",
    )
    expected = {
        "apiId": API_ID,
        "name": "chat",
        "publishAuthModes": modes("AWS_IAM"),
        "subscribeAuthModes": modes("API_KEY", "AWS_IAM"),
        "codeHandlers": "export function onPublish(ctx) {}",
        "handlerConfigs": handlers,
    }
    stubber.add_response("update_channel_namespace", {"channelNamespace": full}, expected)
    applied = []
    control.apply(plan, on_change=applied.append)
    assert applied == [change]


def test_declared_handlers_are_compared_with_get_channel_namespace(stub, tmp_path):
    """With HANDLERS declared, the code file and integrations are compared and sent exactly."""
    client, stubber = stub
    code = tmp_path / "chat.js"
    code.write_text("export function onPublish(ctx) { return ctx.events }\n")
    cfg = config(
        NAMESPACES={
            "chat": {
                "HANDLERS": {
                    "CODE_FILE": code,
                    "ON_PUBLISH": {"BEHAVIOR": "CODE", "DATA_SOURCE": "table"},
                    "ON_SUBSCRIBE": {"BEHAVIOR": "DIRECT", "DATA_SOURCE": "fn"},
                }
            }
        }
    )
    listed = namespace("chat", ("API_KEY", "AWS_IAM"), ("API_KEY", "AWS_IAM"))
    expect_reads(stubber, [listed])
    old = {
        **listed,
        "codeHandlers": "export function onPublish(ctx) { return [] }\n",
        "handlerConfigs": {
            "onSubscribe": {"behavior": "DIRECT", "integration": {"dataSourceName": "fn"}}
        },
    }
    stubber.add_response(
        "get_channel_namespace", {"channelNamespace": old}, {"apiId": API_ID, "name": "chat"}
    )
    control = ControlPlane(cfg, client)
    plan = control.plan()
    [change] = plan.changes
    assert change.differences == (
        f"code handlers: AWS has other code than {code}",
        "onPublish: AWS has none; the settings declare CODE with data source table",
    )
    wanted = {
        "onPublish": {"behavior": "CODE", "integration": {"dataSourceName": "table"}},
        "onSubscribe": {"behavior": "DIRECT", "integration": {"dataSourceName": "fn"}},
    }
    assert change.request["codeHandlers"] == code.read_text()
    assert change.request["handlerConfigs"] == wanted
    stubber.add_response(
        "update_channel_namespace", {"channelNamespace": old}, dict(change.request)
    )
    control.apply(plan)

    # The same handlers on AWS (the default invoke type spelled out): in step.
    expect_reads(stubber, [listed])
    now = {
        **listed,
        "codeHandlers": code.read_text(),
        "handlerConfigs": {
            "onPublish": wanted["onPublish"],
            "onSubscribe": {
                "behavior": "DIRECT",
                "integration": {
                    "dataSourceName": "fn",
                    "lambdaConfig": {"invokeType": "REQUEST_RESPONSE"},
                },
            },
        },
    }
    stubber.add_response(
        "get_channel_namespace", {"channelNamespace": now}, {"apiId": API_ID, "name": "chat"}
    )
    assert ControlPlane(cfg, client).plan().in_sync


def test_new_namespace_with_handlers_is_created_with_them(stub, tmp_path):
    """A missing namespace is created with its code and a DIRECT Lambda integration."""
    client, stubber = stub
    code = tmp_path / "ops.js"
    code.write_text("export const onSubscribe = () => {}\n")
    cfg = config(
        NAMESPACES={
            "ops": {
                "PUBLISH_AUTH_MODES": ["AWS_IAM"],
                "HANDLERS": {
                    "CODE_FILE": str(code),
                    "ON_PUBLISH": {
                        "BEHAVIOR": "DIRECT",
                        "DATA_SOURCE": "fn",
                        "INVOKE_TYPE": "EVENT",
                    },
                },
            }
        }
    )
    expect_reads(stubber, [])
    control = ControlPlane(cfg, client)
    plan = control.plan()
    [change] = plan.changes
    request = {
        "apiId": API_ID,
        "name": "ops",
        "publishAuthModes": modes("AWS_IAM"),
        "subscribeAuthModes": modes("API_KEY", "AWS_IAM"),
        "codeHandlers": code.read_text(),
        "handlerConfigs": {
            "onPublish": {
                "behavior": "DIRECT",
                "integration": {"dataSourceName": "fn", "lambdaConfig": {"invokeType": "EVENT"}},
            }
        },
    }
    assert change.kind == "create"
    assert change.request == request
    stubber.add_response(
        "create_channel_namespace",
        {"channelNamespace": namespace("ops", ("AWS_IAM",), ())},
        request,
    )
    control.apply(plan)


def test_unreadable_code_file_is_a_configuration_error(stub, tmp_path):
    """A CODE_FILE that cannot be read names the setting and the file."""
    client, stubber = stub
    missing = tmp_path / "missing.js"
    cfg = config(NAMESPACES={"chat": {"HANDLERS": {"CODE_FILE": missing}}})
    expect_reads(stubber, [])
    with pytest.raises(
        ConfigurationError, match=r"\['HANDLERS'\]\['CODE_FILE'\]: cannot read"
    ) as info:
        ControlPlane(cfg, client).plan()
    assert info.value.check_id == "appsync_events.E013"


def test_api_auth_drift_updates_the_api_keeping_provider_configs(stub):
    """UpdateApi sends every declared mode, keeping AWS's Cognito and log configuration."""
    client, stubber = stub
    cognito = {
        "authType": "AMAZON_COGNITO_USER_POOLS",
        "cognitoConfig": {"userPoolId": "us-east-1_pool", "awsRegion": "us-east-1"},
    }
    logs = {"logLevel": "ERROR", "cloudWatchLogsRoleArn": "arn:aws:iam::123456789012:role/logs"}
    current = {
        "authProviders": [{"authType": "API_KEY"}, cognito],
        "connectionAuthModes": modes("API_KEY", "AMAZON_COGNITO_USER_POOLS"),
        "defaultPublishAuthModes": modes("API_KEY"),
        "defaultSubscribeAuthModes": modes("API_KEY", "AMAZON_COGNITO_USER_POOLS"),
        "logConfig": logs,
    }
    cfg = config(
        DEFAULT_PUBLISH_AUTH_MODES=["AWS_IAM"],
        DEFAULT_SUBSCRIBE_AUTH_MODES=["API_KEY", "AMAZON_COGNITO_USER_POOLS"],
    )
    stubber.add_response("get_api", api(current, ownerContact="ops team"), {"apiId": API_ID})
    stubber.add_response(
        "list_channel_namespaces",
        {
            "channelNamespaces": [
                namespace("chat", ("AWS_IAM",), ("API_KEY", "AMAZON_COGNITO_USER_POOLS"))
            ]
        },
        {"apiId": API_ID},
    )
    control = ControlPlane(cfg, client)
    plan = control.plan()
    [change] = plan.changes
    assert change.kind == "update-api"
    assert change.differences == (
        "auth providers: AWS has AMAZON_COGNITO_USER_POOLS, API_KEY; the settings declare "
        "AMAZON_COGNITO_USER_POOLS, API_KEY, AWS_IAM",
        "connection auth modes: AWS has AMAZON_COGNITO_USER_POOLS, API_KEY; the settings "
        "declare AMAZON_COGNITO_USER_POOLS, API_KEY, AWS_IAM",
        "default publish auth modes: AWS has API_KEY; the settings declare AWS_IAM",
    )
    request = {
        "apiId": API_ID,
        "name": "events",
        "ownerContact": "ops team",
        "eventConfig": {
            "authProviders": [{"authType": "API_KEY"}, {"authType": "AWS_IAM"}, cognito],
            "connectionAuthModes": modes("API_KEY", "AWS_IAM", "AMAZON_COGNITO_USER_POOLS"),
            "defaultPublishAuthModes": modes("AWS_IAM"),
            "defaultSubscribeAuthModes": modes("API_KEY", "AMAZON_COGNITO_USER_POOLS"),
            "logConfig": logs,
        },
    }
    stubber.add_response("update_api", api(request["eventConfig"]), request)
    control.apply(plan)


def test_a_provider_the_settings_cannot_describe_blocks_apply(stub):
    """A missing Cognito provider is a difference --check reports, but apply refuses to guess."""
    client, stubber = stub
    cfg = config(
        NAMESPACES={"chat": {"SUBSCRIBE_AUTH_MODES": ["AMAZON_COGNITO_USER_POOLS", "API_KEY"]}}
    )
    expect_reads(
        stubber,
        [namespace("chat", ("API_KEY", "AWS_IAM"), ("AMAZON_COGNITO_USER_POOLS", "API_KEY"))],
    )
    control = ControlPlane(cfg, client)
    plan = control.plan()
    [change] = plan.changes
    assert change.kind == "update-api"
    assert (
        "an auth provider for AMAZON_COGNITO_USER_POOLS needs a Cognito user pool" in change.blocked
    )
    assert any("cannot be applied by this command" in line for line in plan.lines())
    with pytest.raises(ControlPlaneError, match="cannot apply the plan") as info:
        control.apply(plan)
    assert info.value.configuration


def test_access_denied_names_the_missing_iam_action(stub):
    """AccessDeniedException becomes one line naming the IAM action to allow."""
    client, stubber = stub
    stubber.add_client_error(
        "get_api",
        service_error_code="AccessDeniedException",
        service_message="User: arn:aws:iam::1:user/ci is not authorized",
        http_status_code=403,
    )
    with pytest.raises(ControlPlaneError) as info:
        ControlPlane(config(), client).plan()
    assert info.value.configuration
    assert info.value.code == "AccessDeniedException"
    assert "allow the IAM action appsync:GetApi" in str(info.value)


def test_unknown_api_id_is_a_configuration_error(stub):
    """NotFoundException on GetApi names API_ID and the region."""
    client, stubber = stub
    stubber.add_client_error(
        "get_api", service_error_code="NotFoundException", http_status_code=404
    )
    with pytest.raises(ControlPlaneError) as info:
        ControlPlane(config(), client).plan()
    assert info.value.configuration
    assert str(info.value).startswith(
        f"APPSYNC_EVENTS['default']['API_ID'] is '{API_ID}', but region us-east-1 has no such "
        "Event API (NotFoundException); check API_ID and REGION"
    )


def test_api_id_that_names_another_api_than_http_url_is_refused(stub):
    """API_ID and HTTP_URL naming two different APIs is a configuration error."""
    client, stubber = stub
    other = api()
    other["api"]["dns"]["HTTP"] = "someotherprefix.appsync-api.us-east-1.amazonaws.com"
    stubber.add_response("get_api", other, {"apiId": API_ID})
    with pytest.raises(ControlPlaneError, match="the two settings name different APIs") as info:
        ControlPlane(config(), client).plan()
    assert info.value.configuration


def test_a_failure_mid_apply_says_how_far_it_got(stub):
    """When the second change fails, the error says one change was made."""
    client, stubber = stub
    cfg = config(NAMESPACES={"a": {}, "b": {}})
    expect_reads(stubber, [])
    control = ControlPlane(cfg, client)
    plan = control.plan()
    stubber.add_response(
        "create_channel_namespace",
        {"channelNamespace": namespace("a", (), ())},
        dict(plan.changes[0].request),
    )
    stubber.add_client_error("create_channel_namespace", service_error_code="BadRequestException")
    with pytest.raises(ControlPlaneError, match=r"\(after 1 of 2 changes were made\)") as info:
        control.apply(plan)
    assert not info.value.configuration


class _Captured(Exception):
    """Raised by the before-send hook once it has seen the signed request."""


def signature_credential(client: Any) -> str:
    """Return the ``Credential=`` scope the client signs a GetApi with (nothing is sent)."""
    seen: dict[str, str] = {}

    def capture(request: Any, **kwargs: Any) -> None:
        seen["authorization"] = request.headers["Authorization"].decode()
        raise _Captured

    client.meta.events.register("before-send.appsync.GetApi", capture)
    with pytest.raises(_Captured):
        client.get_api(apiId=API_ID)
    return seen["authorization"].split("Credential=")[1].split(",")[0]


def test_client_is_built_with_the_alias_iam_credentials_and_standard_retries():
    """The client signs with AUTH['AWS_IAM']'s keys in the alias's region, standard retries."""
    client = appsync_client(config())
    scope = signature_credential(client)
    assert scope.startswith("AKIDTEST/")
    assert scope.endswith("/us-east-1/appsync/aws4_request")
    assert client.meta.config.retries["mode"] == "standard"


def test_without_aws_iam_the_default_chain_is_used(monkeypatch):
    """An alias holding no AWS_IAM signs control-plane calls with the standard AWS chain."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret-either")
    client = appsync_client(config(AUTH={"API_KEY": "da2-tests00000000000000000000000"}))
    assert signature_credential(client).startswith("AKIDFROMENV/")


def test_no_credentials_anywhere_is_an_auth_error():
    """With no AWS credentials anywhere, building the client says where to put them."""
    from appsync_events.exceptions import AuthError

    with pytest.raises(AuthError, match="no AWS credentials found"):
        appsync_client(config(AUTH={"API_KEY": "da2-tests00000000000000000000000"}))


def test_endpoint_override_variables_reach_the_client(monkeypatch):
    """AWS_ENDPOINT_URL_APPSYNC (and AWS_ENDPOINT_URL) point the client at a local emulator."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert appsync_client(config()).meta.endpoint_url == "http://127.0.0.1:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPSYNC", "http://127.0.0.1:2")
    assert appsync_client(config()).meta.endpoint_url == "http://127.0.0.1:2"


def test_a_botocore_without_event_api_handlers_is_refused(monkeypatch):
    """An AppSync model without handlerConfigs (botocore < 1.38.2) gets a clear upgrade message."""
    import botocore.model

    class Without:
        """A model object without ``handlerConfigs`` among its input members."""

        def __init__(self, real):
            self._real = real

        def __getattr__(self, name):
            return getattr(self._real, name)

        @property
        def input_shape(self):
            return Without(self._real.input_shape)

        @property
        def members(self):
            return {k: v for k, v in self._real.members.items() if k != "handlerConfigs"}

    real = botocore.model.ServiceModel.operation_model

    def operation_model(self, name):
        found = real(self, name)
        return Without(found) if name == "CreateChannelNamespace" else found

    monkeypatch.setattr(botocore.model.ServiceModel, "operation_model", operation_model)
    with pytest.raises(
        ConfigurationError, match=r"upgrade boto3 and botocore to 1\.38\.2 or newer"
    ):
        appsync_client(config())


@pytest.mark.parametrize(
    ("days", "low", "high"),
    [
        (1, 86_400, 86_400 + 3600),
        (30, 30 * 86_400, 30 * 86_400 + 3600),
        (365, 365 * 86_400 - 3600, 365 * 86_400),
    ],
)
def test_api_key_expiry_is_on_the_hour_within_appsync_bounds(days, low, high):
    """The expiry is on the hour, at least the asked days away, and never past 365 days."""
    from appsync_events.control import _key_expiry

    now = 1_700_000_123
    expires = _key_expiry(now, days)
    assert expires % 3600 == 0
    assert low <= expires - now <= high


def test_access_denied_on_list_apis_suggests_api_id(stub):
    """Without API_ID a refused ListApis also suggests setting API_ID."""
    client, stubber = stub
    stubber.add_client_error("list_apis", "UnauthorizedException", "not authorized", 401)
    cfg = APIConfig.from_mapping(
        "default",
        {"HTTP_URL": f"https://{HOST}/event", "AUTH": {"AWS_IAM": {"region": "us-east-1"}}},
    )
    with pytest.raises(ControlPlaneError) as info:
        ControlPlane(cfg, client).plan()
    assert "allow the IAM action appsync:ListApis" in str(info.value)
    assert "or set APPSYNC_EVENTS['default']['API_ID']" in str(info.value)


def test_api_created_without_its_key_says_how_to_make_one(stub):
    """When CreateApiKey fails after CreateApi, the error names the new API and the fix."""
    client, stubber = stub
    stubber.add_response("create_api", api(), None)
    stubber.add_client_error("create_api_key", "ApiKeyLimitExceededException", "too many keys")
    with pytest.raises(ControlPlaneError) as info:
        ControlPlane(config(), client).create_api("events")
    assert str(info.value).startswith(
        f"the Event API {API_ID} was created, but not its API key: appsync:CreateApiKey failed "
        "(ApiKeyLimitExceededException: too many keys); create one with "
        f"`aws appsync create-api-key --api-id {API_ID}`"
    )


def test_namespaces_following_api_defaults_are_left_to_the_api_update(stub):
    """When the API's defaults change, a namespace without modes of its own follows them."""
    client, stubber = stub
    cfg = config(DEFAULT_PUBLISH_AUTH_MODES=["AWS_IAM"])
    expect_reads(stubber, [{"apiId": API_ID, "name": "chat"}])  # defaults: both modes
    plan = ControlPlane(cfg, client).plan()
    assert [change.kind for change in plan.changes] == ["update-api"]


def test_a_namespace_with_its_own_modes_is_updated_besides_the_api(stub):
    """A namespace whose own modes differ is updated even when the API's defaults change."""
    client, stubber = stub
    cfg = config(DEFAULT_PUBLISH_AUTH_MODES=["AWS_IAM"])
    expect_reads(stubber, [namespace("chat", ("API_KEY",), ("API_KEY", "AWS_IAM"))])
    plan = ControlPlane(cfg, client).plan()
    assert [change.kind for change in plan.changes] == ["update-api", "update"]
    assert plan.changes[1].differences == (
        "publish auth modes: AWS has API_KEY; the settings declare AWS_IAM",
    )
