"""Templates in Liquid (python-liquid 2) with a fixed vocabulary of personalization variables.

A template is checked when it is saved (`compile_template`): it must parse, and every variable and
filter it uses must be known. Unknown names are refused then, with where they are, never found at
send time. Rendering (`CompiledTemplate.render`) fills each variable the message did not bring from
the template's own default, then the built-in one (`profile.name` -> "고객"); a variable with neither
is an error (StrictUndefined is the safety net), so no message goes out with a hole in it.

Variables (nested mappings, or dotted keys: {"coupon.name": ...} == {"coupon": {"name": ...}}):

    profile.name, profile.first_name, profile.grade, profile.points
    cart.product_name, cart.product_price, cart.product_url, cart.product_image_url,
    cart.item_count, cart.total
    product.name, product.price, product.url, product.image_url      (the trigger's product)
    coupon.name, coupon.expires_at, coupon.discount_code, coupon.discount
    link                                                            (the message's main tracked link)
    links.<any name>                                                (further tracked links)
    store.name, store.url, store.phone

Filters beside Liquid's own: `won` (25000 -> "25,000원") and `date_ko` (a time in the workspace's
zone: "11월 25일(수) 23:59"; `date_ko: "date"` -> "11월 25일(수)"; `date_ko: "full"` ->
"2026년 11월 25일(수) 23:59"). A datetime printed without a filter prints like `date_ko`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from liquid import BoundTemplate, Environment, StrictDefaultUndefined
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions.filtered import FilteredExpression
from liquid.builtin.expressions.path import Path
from liquid.builtin.output import OutputNode
from liquid.exceptions import LiquidError, TemplateNotFoundError
from liquid.stringify import to_liquid_string

from services.dispatcher.adform import Content
from services.dispatcher.sizing import ContentError
from shared.clock import DEFAULT_TIMEZONE, zone


@dataclass(frozen=True)
class VariableInfo:
    description: str
    sample: Any
    default: str | None = None  # built-in default when the message brings no value
    is_datetime: bool = False


_SAMPLE_EXPIRY = datetime(2026, 11, 25, 14, 59, tzinfo=UTC)  # 23:59 in Seoul

VOCABULARY: dict[str, VariableInfo] = {
    "profile.name": VariableInfo("고객 이름", "김다시", default="고객"),
    "profile.first_name": VariableInfo("이름 (성 제외)", "다시", default="고객"),
    "profile.grade": VariableInfo("회원 등급", "VIP"),
    "profile.points": VariableInfo("적립금", 1200),
    "cart.product_name": VariableInfo("장바구니 상품명", "수분크림"),
    "cart.product_price": VariableInfo("장바구니 상품 가격", 25000),
    "cart.product_url": VariableInfo("장바구니 상품 링크", "https://dasi.shop/products/P1"),
    "cart.product_image_url": VariableInfo("장바구니 상품 이미지", "https://dasi.shop/img/P1.jpg"),
    "cart.item_count": VariableInfo("장바구니 상품 수", 1),
    "cart.total": VariableInfo("장바구니 금액", 25000),
    "product.name": VariableInfo("상품명", "수분크림"),
    "product.price": VariableInfo("상품 가격", 25000),
    "product.url": VariableInfo("상품 링크", "https://dasi.shop/products/P1"),
    "product.image_url": VariableInfo("상품 이미지", "https://dasi.shop/img/P1.jpg"),
    "coupon.name": VariableInfo("쿠폰 이름", "신규 10% 할인"),
    "coupon.expires_at": VariableInfo("쿠폰 만료 일시", _SAMPLE_EXPIRY, is_datetime=True),
    "coupon.discount_code": VariableInfo("할인 코드", "WELCOME10"),
    "coupon.discount": VariableInfo("할인 내용", "10%"),
    "link": VariableInfo("추적 링크", "https://go.dasi.shop/c/AbC123"),
    "store.name": VariableInfo("스토어 이름", "다시 스토어"),
    "store.url": VariableInfo("스토어 주소", "https://dasi.shop"),
    "store.phone": VariableInfo("고객센터 번호", "1588-1234"),
}
OPEN_PREFIXES = {"links": VariableInfo("추가 추적 링크 (links.<이름>)", "https://go.dasi.shop/c/XyZ789")}

_WEEKDAYS = "월화수목금토일"


class KoreanDateTime(datetime):
    """A datetime already in the workspace's zone that prints the Korean way."""

    def __str__(self) -> str:
        return format_date_ko(self)


def format_date_ko(value: datetime, style: str = "datetime") -> str:
    day = f"{value.month}월 {value.day}일({_WEEKDAYS[value.weekday()]})"
    if style == "date":
        return day
    if style == "full":
        return f"{value.year}년 {day} {value:%H:%M}"
    return f"{day} {value:%H:%M}"


def _parse_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _won(value: Any) -> str:
    try:
        amount = Decimal(str(value).replace(",", ""))
    except InvalidOperation:
        return str(value)
    return f"{amount:,.0f}원"


def _date_ko(value: Any, style: str = "datetime") -> str:
    parsed = _parse_datetime(value)
    return format_date_ko(parsed, style) if parsed else str(value)


class _Environment(Environment):
    # a template is the store's text, not a program: bound the work one rendering may do
    loop_iteration_limit = 1_000
    output_stream_limit = 100_000  # characters
    context_depth_limit = 10


def _environment() -> Environment:
    env = _Environment(undefined=StrictDefaultUndefined)
    env.filters["won"] = _won
    env.filters["date_ko"] = _date_ko
    return env


ENV = _environment()  # immutable after construction: filters registered once, no per-call state


def variable_info(path: str) -> VariableInfo | None:
    if path in VOCABULARY:
        return VOCABULARY[path]
    head, _, rest = path.partition(".")
    if head in OPEN_PREFIXES and rest and "." not in rest:
        return OPEN_PREFIXES[head]
    return None


@dataclass(frozen=True)
class TemplateProblem:
    """One reason a template cannot be saved; `field` is relative to the template ("body",
    "buttons.0.link_mo", "variables.coupon.name")."""

    field: str
    message: str
    type: str


class TemplateInvalid(ValueError):
    def __init__(self, problems: list[TemplateProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def _line_col(source: str, index: int) -> str:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


# A part of a template, as a fast renderer runs it: literal text, or the path of a variable printed
# without filters. Most templates are only that ("{{ profile.name }}님, ..."): joining the pieces is
# ~20x cheaper than Liquid's render, which builds a render context and output stream per call.
_Piece = str | tuple[str, ...]


def _plain_pieces(template: BoundTemplate) -> tuple[_Piece, ...] | None:
    """The template as pieces when it is only text and unfiltered variable paths; else None."""
    pieces: list[_Piece] = []
    for node in template.nodes:
        if isinstance(node, ContentNode):
            pieces.append(node.text)
            continue
        if not isinstance(node, OutputNode):
            return None
        expression = node.expression
        if not isinstance(expression, FilteredExpression) or expression.filters:
            return None
        path = expression.left
        if not isinstance(path, Path) or not all(isinstance(s, str) for s in path.path):
            return None
        pieces.append(tuple(str(s) for s in path.path))
    return tuple(pieces)


def _render_pieces(pieces: tuple[_Piece, ...], context: Mapping[str, Any]) -> str | None:
    """What Liquid would print, or None when a path does not resolve through plain dicts (Liquid then
    renders it, with its own rules and errors) or the output is over the limit (Liquid refuses it)."""
    out: list[str] = []
    for piece in pieces:
        if piece.__class__ is str:
            out.append(piece)
            continue
        node: Any = context
        for segment in piece:
            if node.__class__ is not dict or segment not in node:
                return None
            node = node[segment]
        out.append(node if node.__class__ is str else to_liquid_string(node, autoescape=False))
    text = "".join(out)
    if len(text) * 4 > _Environment.output_stream_limit and (
        len(text.encode()) > _Environment.output_stream_limit
    ):
        return None
    return text


@dataclass(frozen=True)
class _VariableSpec:
    path: str
    default: str | None  # the template's default, else the built-in one
    is_datetime: bool


@dataclass(frozen=True)
class CompiledTemplate:
    """A checked template, parsed once, rendered per recipient."""

    parts: Mapping[str, BoundTemplate]  # "body", "subject", "fallback_body", "buttons.0.link_mo" ...
    variables: frozenset[str]  # the variable paths it uses
    defaults: Mapping[str, str] = field(default_factory=dict)
    # worked out once: the variables' defaults, and each part's fast form where it has one
    _specs: tuple[_VariableSpec, ...] = field(init=False, repr=False, compare=False)
    _pieces: Mapping[str, tuple[_Piece, ...] | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        specs = []
        for path in sorted(self.variables):
            info = variable_info(path)
            default = self.defaults.get(path)
            if default is None and info is not None:
                default = info.default
            specs.append(_VariableSpec(path, default, bool(info and info.is_datetime)))
        object.__setattr__(self, "_specs", tuple(specs))
        object.__setattr__(self, "_pieces", {name: _plain_pieces(t) for name, t in self.parts.items()})

    def render(self, values: Mapping[str, Any], *, timezone: str = DEFAULT_TIMEZONE) -> RenderedTemplate:
        """Render every part; ContentError `missing_variable` names a variable that has no value and
        no default. Values may be nested mappings or dotted keys."""
        context = _context(values, self._specs, timezone)
        out: dict[str, str] = {}
        for name, template in self.parts.items():
            pieces = self._pieces[name]
            text = _render_pieces(pieces, context) if pieces is not None else None
            if text is None:
                try:
                    text = template.render(**context)
                except LiquidError as exc:
                    raise ContentError("render_error", f"{name}: {exc.message}", field=name) from exc
            out[name] = text
        parameters = {spec.path: str(_lookup(context, spec.path)) for spec in self._specs}
        return RenderedTemplate(out, parameters)


@dataclass(frozen=True)
class RenderedTemplate:
    parts: Mapping[str, str]
    parameters: Mapping[str, str]  # each used variable's value as text: alimtalk templateParameter

    @property
    def body(self) -> str:
        return self.parts.get("body", "")

    @property
    def subject(self) -> str | None:
        return self.parts.get("subject") or None

    @property
    def fallback_body(self) -> str:
        return self.parts.get("fallback_body") or self.body

    def content(self, image_url: str | None = None) -> Content:
        return Content(self.body, self.subject, image_url)

    def buttons(self, buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The template's buttons with their rendered text fields."""
        return [
            {k: self.parts.get(f"buttons.{i}.{k}", v) for k, v in button.items()}
            for i, button in enumerate(buttons)
        ]


def _nest(values: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if "." in key:
            head, _, rest = key.partition(".")
            inner = nested.setdefault(head, {})
            if isinstance(inner, dict):
                inner.update(_nest({rest: value}))
        # `type(...) is dict` first: an ABC isinstance check costs more than the rest of the loop
        elif type(value) is dict or isinstance(value, Mapping):
            inner = nested.setdefault(key, {})
            if isinstance(inner, dict):
                inner.update(_nest(value))
        else:
            nested[key] = value
    return nested


def _lookup(context: Mapping[str, Any], path: str) -> Any:
    node: Any = context
    for part in path.split("."):
        if not (type(node) is dict or isinstance(node, Mapping)) or part not in node:
            return None
        node = node[part]
    return node


def _assign(context: dict[str, Any], path: str, value: Any) -> None:
    *heads, last = path.split(".")
    node = context
    for part in heads:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _context(values: Mapping[str, Any], specs: tuple[_VariableSpec, ...], timezone: str) -> dict[str, Any]:
    context = _nest(values)
    tz = None
    for spec in specs:
        path = spec.path
        value = _lookup(context, path)
        if value is None or value == "":
            if spec.default is None:
                raise ContentError(
                    "missing_variable",
                    f"no value for `{path}` and the template has no default for it",
                    field=path,
                )
            _assign(context, path, spec.default)
            continue
        if spec.is_datetime:
            parsed = _parse_datetime(value)
            if parsed is None:
                raise ContentError("bad_variable", f"`{path}` is not a date and time: {value!r}", field=path)
            tz = tz or zone(timezone)
            local = parsed.astimezone(tz)
            _assign(context, path, KoreanDateTime.fromtimestamp(local.timestamp(), tz))
    return context


def sample_values() -> dict[str, Any]:
    """A value for every known variable: what a preview renders with when given none."""
    values: dict[str, Any] = {path: info.sample for path, info in VOCABULARY.items()}
    values["links.main"] = OPEN_PREFIXES["links"].sample
    return values


def compile_template(
    parts: Mapping[str, str | None], defaults: Mapping[str, str] | None = None
) -> CompiledTemplate:
    """Parse and check every part (body, subject, button fields ...). TemplateInvalid lists every
    problem: a syntax error, an unknown variable or filter (with line and column), a default for an
    unknown variable."""
    problems: list[TemplateProblem] = []
    bound: dict[str, BoundTemplate] = {}
    used: set[str] = set()
    for name, source in parts.items():
        if not source:
            continue
        try:
            template = ENV.from_string(source)
            analysis = template.analyze()  # {% include %} / {% render %} fail here: no partials
        except LiquidError as exc:
            where = ""
            token = getattr(exc, "token", None)
            if token is not None and hasattr(token, "start_index"):
                where = f" at {_line_col(source, token.start_index)}"
            message = exc.message
            if isinstance(exc, TemplateNotFoundError):
                message = "{% include %} and {% render %} are not supported: a template stands alone"
            problems.append(
                TemplateProblem(name, f"template syntax error{where}: {message}", "template_syntax")
            )
            continue
        for variables in analysis.globals.values():
            for variable in variables:
                segments = variable.segments
                if not all(isinstance(s, str) for s in segments):
                    path = ".".join(str(s) for s in segments if isinstance(s, str))
                    problems.append(
                        TemplateProblem(
                            name, f"`{path}[...]`: computed lookups are not allowed", "unknown_variable"
                        )
                    )
                    continue
                path = ".".join(str(s) for s in segments)
                if variable_info(path) is None:
                    problems.append(
                        TemplateProblem(
                            name,
                            f"unknown variable `{path}` at {_line_col(source, variable.span.index)}",
                            "unknown_variable",
                        )
                    )
                else:
                    used.add(path)
        for filter_name in template.filter_names():
            if filter_name not in ENV.filters:
                problems.append(TemplateProblem(name, f"unknown filter `{filter_name}`", "unknown_filter"))
        bound[name] = template
    for path, default in (defaults or {}).items():
        if variable_info(path) is None:
            problems.append(
                TemplateProblem(f"variables.{path}", f"unknown variable `{path}`", "unknown_variable")
            )
        elif not isinstance(default, str):
            problems.append(TemplateProblem(f"variables.{path}", "a default is text", "string_type"))
    if problems:
        raise TemplateInvalid(problems)
    return CompiledTemplate(bound, frozenset(used), dict(defaults or {}))
