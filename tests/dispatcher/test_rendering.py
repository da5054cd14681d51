"""Liquid templates: unknown variables refused when compiled, defaults for missing values, strict
rendering, Korean dates in the workspace's zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.dispatcher.rendering import TemplateInvalid, compile_template, sample_values
from services.dispatcher.sizing import ContentError

CART = (
    "{{ profile.name }}님, 장바구니의 {{ cart.product_name }}({{ cart.product_price | won }})이 기다려요.\n"
    "{{ coupon.name }} 쿠폰은 {{ coupon.expires_at | date_ko }}까지. 코드 {{ coupon.discount_code }}\n"
    "{{ link }}"
)


def test_renders_trigger_and_profile_variables():
    compiled = compile_template({"body": CART})
    rendered = compiled.render(
        {
            "profile": {"name": "김다시"},
            "cart": {"product_name": "수분크림", "product_price": 25000},
            "coupon.name": "신규 10% 할인",
            "coupon.expires_at": "2026-11-25T14:59:00Z",
            "coupon.discount_code": "WELCOME10",
            "link": "https://go.dasi.shop/c/AbC",
        }
    )
    assert rendered.body == (
        "김다시님, 장바구니의 수분크림(25,000원)이 기다려요.\n"
        "신규 10% 할인 쿠폰은 11월 25일(수) 23:59까지. 코드 WELCOME10\n"
        "https://go.dasi.shop/c/AbC"
    )
    assert rendered.parameters["profile.name"] == "김다시"
    assert compiled.variables >= {"profile.name", "coupon.expires_at", "link"}


def test_dates_follow_the_workspace_timezone():
    compiled = compile_template(
        {"body": "{{ coupon.expires_at }} / {{ coupon.expires_at | date_ko: 'full' }}"}
    )
    expiry = datetime(2026, 11, 25, 14, 59, tzinfo=UTC)
    assert (
        compiled.render({"coupon.expires_at": expiry}).body
        == "11월 25일(수) 23:59 / 2026년 11월 25일(수) 23:59"
    )
    la = compiled.render({"coupon.expires_at": expiry}, timezone="America/Los_Angeles").body
    assert la == "11월 25일(수) 06:59 / 2026년 11월 25일(수) 06:59"


def test_defaults_fill_missing_values():
    compiled = compile_template(
        {"body": "{{ profile.name }}님, {{ coupon.name }} 쿠폰 도착"}, {"coupon.name": "감사"}
    )
    assert compiled.render({}).body == "고객님, 감사 쿠폰 도착"  # built-in default, then the template's
    assert compiled.render({"profile.name": "", "coupon.name": None}).body == "고객님, 감사 쿠폰 도착"
    override = compile_template({"body": "{{ profile.name }}님"}, {"profile.name": "회원"})
    assert override.render({}).body == "회원님"


def test_a_missing_value_without_default_is_an_error_not_a_hole():
    compiled = compile_template({"body": "{{ cart.product_name }} 재입고"})
    with pytest.raises(ContentError) as exc:
        compiled.render({})
    assert exc.value.code == "missing_variable" and exc.value.field == "cart.product_name"


def test_unknown_variables_and_filters_are_refused_with_their_place():
    with pytest.raises(TemplateInvalid) as exc:
        compile_template(
            {"body": "안녕 {{ profile.nmae }}\n{{ coupon.name | shout }}", "subject": "{{ secret }}"},
            {"coupon.title": "x"},
        )
    problems = {(p.field, p.type, p.message) for p in exc.value.problems}
    assert ("body", "unknown_variable", "unknown variable `profile.nmae` at line 1, column 7") in problems
    assert ("body", "unknown_filter", "unknown filter `shout`") in problems
    assert ("subject", "unknown_variable", "unknown variable `secret` at line 1, column 4") in problems
    assert ("variables.coupon.title", "unknown_variable", "unknown variable `coupon.title`") in problems


def test_syntax_errors_are_refused():
    with pytest.raises(TemplateInvalid) as exc:
        compile_template({"body": "{% if profile.name %}안녕"})
    assert exc.value.problems[0].type == "template_syntax"


def test_locals_and_open_link_names_are_allowed():
    compiled = compile_template(
        {
            "body": "{% assign who = profile.name | default: '고객' %}"
            "{{ who }}님 {{ links.sale }} {{ links.cart }}"
        }
    )
    rendered = compiled.render(
        {"profile.name": "박기획", "links": {"sale": "https://a", "cart": "https://b"}}
    )
    assert rendered.body == "박기획님 https://a https://b"


def test_every_variable_has_a_sample():
    compiled = compile_template({"body": CART})
    assert "김다시" in compiled.render(sample_values()).body


def test_partials_are_refused_and_runaway_loops_stopped():
    with pytest.raises(TemplateInvalid) as exc:
        compile_template({"body": "{% include 'footer' %}"})
    assert "not supported" in exc.value.problems[0].message
    compiled = compile_template({"body": "{% for i in (1..100000000) %}x{% endfor %}"})
    with pytest.raises(ContentError) as content:
        compiled.render({})
    assert content.value.code == "render_error"


@pytest.mark.parametrize(
    "source",
    [
        "{{ profile.name }}님, 주문하신 {{ product.name }}이(가) 발송되었습니다. 배송조회: {{ link }}",
        "{{- profile.name -}}  \n {{ coupon.expires_at }} / {{ profile.points }} {{ store.name }}",
        "{{ links.main }}{{ profile.grade }}",
        "{{ coupon.expires_at | date_ko }} {{ profile.points | won }}",  # filters: Liquid renders these
        "{% if profile.grade %}{{ profile.grade }}{% endif %} {{ link }}",
    ],
)
@pytest.mark.parametrize(
    "values",
    [
        {"profile.name": "김다시", "product.name": "수분크림", "link": "https://go.dasi.shop/c/A"},
        {"profile": {"name": "", "points": 0, "grade": True}, "coupon.expires_at": "2026-11-25T14:59:00Z"},
        {"profile": {"points": 1.5, "grade": [1, 2]}, "links.main": "https://m", "link": {"a": 1}},
    ],
)
def test_plain_templates_render_as_liquid_does(source, values):
    """Text and bare variables are joined without Liquid's render machinery: the same text comes out
    (numbers, booleans, lists, dates, defaults), and every other template still goes through Liquid."""
    defaults = {"profile.grade": "일반", "profile.points": "0", "links.main": "https://d", "link": "-"}
    defaults |= {"product.name": "상품", "coupon.expires_at": "2026-01-01T00:00:00Z", "store.name": "다시"}
    fast = compile_template({"body": source}, defaults)
    slow = compile_template({"body": source}, defaults)
    object.__setattr__(slow, "_pieces", {"body": None})  # force Liquid for every part
    assert fast.render(values, timezone="Asia/Seoul") == slow.render(values, timezone="Asia/Seoul")
