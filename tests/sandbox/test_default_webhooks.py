"""`dasi up` points the sandbox's delivery reports at the local dispatcher: every new appkey starts
with those webhooks; without the setting (tests) an appkey has none until one is PUT."""

from __future__ import annotations

from infra.sandbox.main import default_webhooks
from infra.sandbox.settings import SandboxSettings
from infra.sandbox.state import Provider, SandboxState
from shared.clock import FrozenClock
from shared.testing.plugin import DEFAULT_TEST_NOW


def test_every_new_appkey_reports_to_the_local_dispatcher_when_configured() -> None:
    settings = SandboxSettings(webhook_base_url="http://127.0.0.1:8004/v1/webhooks/")
    state = SandboxState(FrozenClock(DEFAULT_TEST_NOW), default_webhooks=default_webhooks(settings))

    hooks = state.partition("상점-1").webhooks
    assert {p: t.url for p, t in hooks.items()} == {
        Provider.kakao: "http://127.0.0.1:8004/v1/webhooks/nhn-kakao",
        Provider.sms: "http://127.0.0.1:8004/v1/webhooks/nhn-sms",
        Provider.email: "http://127.0.0.1:8004/v1/webhooks/email",
    }
    assert {t.secret for t in hooks.values()} == {"dasi-local-webhook-secret"}
    hooks.pop(Provider.kakao)  # one appkey's change is its own
    assert Provider.kakao in state.partition("상점-2").webhooks


def test_without_the_setting_an_appkey_has_no_webhooks() -> None:
    state = SandboxState(FrozenClock(DEFAULT_TEST_NOW), default_webhooks=default_webhooks(SandboxSettings()))
    assert state.partition("상점-1").webhooks == {}
