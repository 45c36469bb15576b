"""The pooled HTTP publisher and the appsync backend, on httpx mock transports."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from appsync_events import publish
from appsync_events.backends import get_backend
from appsync_events.conf import APIConfig, get_api_config
from appsync_events.exceptions import PartialPublishError, PublishError
from appsync_events.http import AsyncHTTPPublisher, HTTPPublisher
from appsync_events.publishing import apublish
from appsync_events.results import PublishResult

KEY = "da2-tests00000000000000000000000"
BASE: dict[str, Any] = {
    "HTTP_URL": "http://127.0.0.1:9/event",
    "REGION": "us-east-1",
    "AUTH": {"API_KEY": KEY},
    "NAMESPACES": {"default": {}, "chat": {}},
}


class Service:
    """A scripted AppSync HTTP endpoint: answers requests in order from ``script``."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        body = json.loads(request.content)
        if step == "ok":
            return httpx.Response(
                200,
                json={
                    "successful": [
                        {"identifier": f"id-{len(self.requests)}-{i}", "index": i}
                        for i in range(len(body["events"]))
                    ],
                    "failed": [],
                },
            )
        assert isinstance(step, httpx.Response)
        return step

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.answer)

    def async_transport(self) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            await request.aread()
            return self.answer(request)

        return httpx.MockTransport(handler)


@pytest.fixture
def service(settings):
    """Point the default alias at a scripted service through the appsync backend."""
    svc = Service()
    settings.APPSYNC_EVENTS = {
        "default": {
            **BASE,
            "PUBLISH": {
                "BACKEND": "appsync",
                "OPTIONS": {"TRANSPORT": svc.transport(), "ASYNC_TRANSPORT": svc.async_transport()},
            },
        }
    }
    return svc


def test_request_shape(service):
    """The request is POST /event with compact JSON, the API key and JSON content type."""
    publish("chat/a", {"x": 1}, "two")
    (request,) = service.requests
    assert request.method == "POST"
    assert str(request.url) == "http://127.0.0.1:9/event"
    assert request.content == b'{"channel":"/chat/a","events":["{\\"x\\":1}","\\"two\\""]}'
    assert request.headers["x-api-key"] == KEY
    assert request.headers["content-type"] == "application/json"


def test_twelve_events_three_requests(service):
    """Twelve events are three HTTP requests of 5, 5 and 2; identifiers map to caller indices."""
    result = publish("/chat/a", *range(12))
    assert isinstance(result, PublishResult)
    assert [len(json.loads(r.content)["events"]) for r in service.requests] == [5, 5, 2]
    assert result.identifiers[10] == "id-3-0"
    assert result.identifiers[4] == "id-1-4"


def test_failed_entries_map_to_caller_indices(service):
    """Per-event failures in a later chunk are reported by the caller's index."""
    service.script = [
        "ok",
        httpx.Response(
            200,
            json={
                "successful": [{"identifier": "a", "index": 0}],
                "failed": [
                    {
                        "identifier": "b",
                        "index": 1,
                        "code": "EventTooLargeException",
                        "message": "Transformed event is larger than 240KB",
                    }
                ],
            },
        ),
    ]
    result = publish("/chat/a", *range(7))
    assert isinstance(result, PublishResult)
    assert [(e.index, e.code) for e in result.failed] == [(6, "EventTooLargeException")]
    assert result.identifiers[5] == "a"


def test_partial_failure_says_what_was_accepted(service):
    """An auth error on the third request raises PartialPublishError with accepted indices."""
    service.script = [
        "ok",
        "ok",
        httpx.Response(
            401,
            json={
                "errors": [
                    {"errorType": "UnauthorizedException", "message": "You are not authorized."}
                ]
            },
        ),
    ]
    with pytest.raises(PartialPublishError) as info:
        publish("/chat/a", *range(12))
    err = info.value
    assert err.accepted == tuple(range(10))
    assert err.not_sent == (10, 11)
    assert err.status == 401
    assert err.error_types == ("UnauthorizedException",)
    assert isinstance(err.result, PublishResult)
    assert len(err.result.successful) == 10
    assert KEY not in str(err)


def test_first_request_failure_is_a_plain_publish_error(service):
    """When nothing was accepted the error is a PublishError with the service's errors."""
    service.script = [
        httpx.Response(
            400, json={"errors": [{"errorType": "BadRequestException", "message": "bad"}]}
        )
    ]
    with pytest.raises(PublishError) as info:
        publish("/chat/a", 1)
    assert not isinstance(info.value, PartialPublishError)
    assert info.value.status == 400
    assert "BadRequestException: bad" in str(info.value)


def test_non_json_error_body(service):
    """A proxy's non-JSON error page still gives a PublishError with the status."""
    service.script = [httpx.Response(502, text="<html>Bad gateway</html>")]
    with pytest.raises(PublishError) as info:
        publish("/chat/a", 1)
    assert info.value.status == 502
    assert info.value.error_types == ("HTTP502",)


def test_malformed_success_body(service):
    """A 200 answer that is not a publish result is a PublishError, not a crash."""
    service.script = [httpx.Response(200, json={"successful": "nope"})]
    with pytest.raises(PublishError, match="not a publish result"):
        publish("/chat/a", 1)
    service.script = [httpx.Response(200, text="hello")]
    with pytest.raises(PublishError, match="not a JSON publish result"):
        publish("/chat/a", 1)


def test_timeout_is_not_retried(service):
    """A read timeout (the request went out) is not retried: it could duplicate events."""
    service.script = [httpx.ReadTimeout("slow")]
    with pytest.raises(PublishError, match="may have accepted"):
        publish("/chat/a", 1)
    assert len(service.requests) == 1


def test_connection_refused_is_retried_then_reported(settings):
    """A refused connection is retried by the transport (nothing was sent), then reported."""
    settings.APPSYNC_EVENTS = {"default": {**BASE, "PUBLISH": {"OPTIONS": {"RETRIES": 1}}}}
    with pytest.raises(PublishError, match="nothing was sent"):
        publish("/chat/a", 1)


def test_backend_is_shared_and_pooled(service):
    """One backend (one pool) serves every publish of an alias."""
    first = get_backend("default")
    publish("/chat/a", 1)
    publish("/chat/a", 2)
    assert get_backend("default") is first
    assert first.publisher is first.publisher  # type: ignore[attr-defined]
    first.close()
    publish("/chat/a", 3)  # reopened on demand
    assert len(service.requests) == 3


def test_unknown_backend_option_is_a_configuration_error(settings):
    """An unknown OPTIONS key names the valid ones."""
    from appsync_events.exceptions import ConfigurationError

    settings.APPSYNC_EVENTS = {"default": {**BASE, "PUBLISH": {"OPTIONS": {"COLOUR": 1}}}}
    with pytest.raises(ConfigurationError, match="valid options"):
        get_backend("default")


def test_publisher_directly():
    """HTTPPublisher posts one request and returns the service's answer."""
    svc = Service()
    with HTTPPublisher(_config(), transport=svc.transport()) as publisher:
        answer = publisher.publish("/chat/a", ['"x"'])
    assert [e.index for e in answer.successful] == [0]
    with pytest.raises(ValueError, match="retries"):
        HTTPPublisher(_config(), retries=-1)


async def test_async_publisher_directly():
    """AsyncHTTPPublisher posts one request and returns the service's answer."""
    svc = Service()
    async with AsyncHTTPPublisher(_config(), transport=svc.async_transport()) as publisher:
        answer = await publisher.publish("/chat/a", ['"x"', "1"])
    assert [e.index for e in answer.successful] == [0, 1]


async def test_apublish_partial_failure(service):
    """The async path chunks and reports partial failures like the sync one."""
    service.script = ["ok", httpx.Response(500, json={"errors": [{"errorType": "InternalError"}]})]
    with pytest.raises(PartialPublishError) as info:
        await apublish("/chat/a", *range(8))
    assert info.value.accepted == (0, 1, 2, 3, 4)
    assert info.value.not_sent == (5, 6, 7)
    await get_backend("default").aclose()


async def test_apublish_ok(service):
    """apublish() goes through the async pool."""
    result = await apublish("/chat/a", {"x": 1})
    assert isinstance(result, PublishResult)
    assert result.ok
    await get_backend("default").aclose()


def _config() -> APIConfig:
    from django.test import override_settings

    with override_settings(APPSYNC_EVENTS={"default": BASE}):
        return get_api_config("default")
