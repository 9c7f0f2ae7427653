"""The JSON API's shapes: every request and response body, declared once as typed classes.

Both what the service accepts and what /openapi.json says come from these declarations: a view
names its body and query classes in `@operation` (which openapi.py reads), and `body()` and
`query()` validate the request against exactly those classes. pydantic validates (chosen by
measurement: the README's benchmark section), strictly: no type coercion, unknown fields refused.
Its first error becomes the service's InvalidRequest, with `field` naming the culprit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

import orjson
from flask import Response, current_app, request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic.functional_validators import AfterValidator, BeforeValidator
from pydantic_core import ErrorDetails, PydanticCustomError

from service import assessments
from service.assessments import ASSESSMENT_ID, ASSESSMENT_ID_RULE
from service.errors import InvalidRequest
from service.events import Entry as FeedEntry
from service.limits import (
    FREE_TEXT_RULE,
    MAX_ASSESSMENT_ID,
    MAX_BATCH,
    MAX_DEPTH,
    MAX_IDENTIFIER,
    MAX_PAGE,
    MAX_REASON,
    MAX_TEXT,
    MAX_TOKEN,
    free_text_problem,
)
from service.policies.store import DEFAULT_TENANT
from service.workflows import IDENTIFIER, IDENTIFIER_RULE

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

NOT_AN_OBJECT = "the body must be a JSON object (Content-Type: application/json)"
TOO_DEEP = f"the body nests objects and arrays more than {MAX_DEPTH} deep"
FREE_TEXT = "free_text"
"""The finding of free text against its rule, whose words name the character at fault."""


def _free_text_checked(value: str) -> str:
    """Free text that people read later, as limits.FREE_TEXT_RULE says; its error names the
    character at fault (the `free_text` finding keeps its own words: see `_message`)."""
    problem = free_text_problem(value)
    if problem is not None:
        raise PydanticCustomError(FREE_TEXT, problem)
    return value


def _ascii_number(value: object) -> object:
    """A query string's number in ASCII digits only (int() would also take `١٢`, `+5`, ` 5`,
    `5_0`), left for the field's own range to check."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise PydanticCustomError("int_parsing", "Input should be a number in ASCII digits")
    return value


IN_QUERY = BeforeValidator(_ascii_number)
"""Marks an integer as one a query string gives (after its Field, which keeps the schema's
minimum and maximum)."""


def _matching(rule: re.Pattern[str], limit: int, description: str) -> Any:
    """A string the service's own regular expression (anchored with \\Z) accepts."""
    pattern = rule.pattern.removesuffix("\\Z").join("^$")
    return Field(pattern=pattern, max_length=limit, description=description)


Ident = Annotated[
    str,
    _matching(
        IDENTIFIER,
        MAX_IDENTIFIER,
        f"an identifier: {IDENTIFIER_RULE}",
    ),
]
AssessmentId = Annotated[
    str, _matching(ASSESSMENT_ID, MAX_ASSESSMENT_ID, f"an assessment id: {ASSESSMENT_ID_RULE}")
]


def _free_text(limit: int) -> Any:
    """The length and description of free text of 1 to `limit` characters."""
    return Field(
        min_length=1,
        max_length=limit,
        description=f"a string of 1-{limit} characters: {FREE_TEXT_RULE}",
    )


Text = Annotated[str, _free_text(MAX_TEXT), AfterValidator(_free_text_checked)]
"""Free text such as an actor: who the caller says acted. A look-alike (Cyrillic а) passes the
rule; the API key recorded beside it is what proves who did it."""
Reason = Annotated[str, _free_text(MAX_REASON), AfterValidator(_free_text_checked)]
ItemId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_ASSESSMENT_ID,
        description=f"an id string of 1-{MAX_ASSESSMENT_ID} characters",
    ),
]


class Body(BaseModel):
    """A request body or query: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- requests --------------------------------------------------------------------------------


class Place(Body):
    """Where a question is about: an assessment (its current phase), or an area and phase."""

    tenant: Ident = DEFAULT_TENANT
    role: Ident
    assessment: AssessmentId | None = None
    area: Ident | None = None
    phase: Ident | None = None

    def checked(self) -> Place:
        """Itself, if it names either an assessment, or an area and a phase."""
        if self.assessment is not None:
            for name in ("area", "phase"):
                if getattr(self, name) is not None:
                    raise InvalidRequest(
                        "give either assessment, or area and phase; not both", field=name
                    )
            return self
        if self.area is None and self.phase is None:
            raise InvalidRequest("give assessment, or area and phase", field="assessment")
        for name in ("area", "phase"):
            if getattr(self, name) is None:
                raise InvalidRequest(f"missing field {name!r}", field=name)
        return self


class QuestionBody(Place):
    """POST /authorize: may `role` take `action` on the assessment, or at the phase?"""

    action: Ident


class BatchItem(QuestionBody):
    """One question of a batch, with the caller's id for it."""

    id: ItemId


class BatchBody(Body):
    """POST /authorize/batch. Items are validated one by one: a bad item gets its own error."""

    requests: Annotated[list[SkipValidation[BatchItem]], Field(max_length=MAX_BATCH)]


class CreateBody(Body):
    """POST /assessments: register an assessment at its area's first phase."""

    tenant: Ident = DEFAULT_TENANT
    id: AssessmentId
    area: Ident
    actor: Text | None = None


class MoveBody(Body):
    """POST /assessments/<id>/advance: who moves it, on whose behalf, and from which phase."""

    tenant: Ident = DEFAULT_TENANT
    role: Ident
    actor: Text
    expected_phase: Ident | None = None


class ReopenBody(MoveBody):
    """POST /assessments/<id>/reopen: a move back one phase, which needs a reason."""

    reason: Reason


_BULK_ID = {
    "description": f"an assessment id: {ASSESSMENT_ID_RULE}; any other value gets its own error"
}


class BulkAdvanceBody(MoveBody):
    """POST /assessments/advance. Ids are checked one by one: a bad id gets its own error."""

    # Any value is a valid item: one that is not an assessment id is answered in its place (its
    # own 400 in `results`), so the schema promises nothing of an item beyond its description.
    ids: Annotated[
        list[Annotated[SkipValidation[AssessmentId], WithJsonSchema(_BULK_ID)]],
        Field(min_length=1, max_length=MAX_BATCH),
    ]


class TenantQuery(Body):
    """The query of GET /assessments/<id>."""

    tenant: Ident = DEFAULT_TENANT


class FeedQuery(TenantQuery):
    """The query of GET /events."""

    after: Annotated[str, Field(max_length=MAX_TEXT)] | None = Field(
        default=None,
        description=f"the cursor of the previous page, at most {MAX_TEXT} characters; omit it to "
        "start",
    )
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, strict=False), IN_QUERY] = 100


# -- responses -------------------------------------------------------------------------------


class Answer(BaseModel):
    """A response body pydantic builds and checks (errors, the OpenAPI document). The answers on
    the hot paths below are plain dataclasses: built from trusted values, they cost a third as
    much to make and serialise (bench.shapes)."""

    model_config = ConfigDict(frozen=True)


class ErrorObject(Answer):
    """What went wrong: a code, a sentence, and the field at fault when there is one."""

    code: str
    message: str
    field: str | None = Field(default=None, exclude_if=lambda value: value is None)


class ErrorBody(Answer):
    """Every error answer: {"error": {...}}."""

    error: ErrorObject


@dataclass(slots=True)
class Decision:
    """The answer to a question; a deny is an answer (allowed false), not an error."""

    decision_id: Annotated[
        str, Field(description="Also in the X-Decision-Id header and the decision log.")
    ]
    allowed: bool
    tenant: str
    role: str
    action: str
    area: str
    phase: str
    assessment: str | None
    policy_version: int
    rule: Annotated[
        list[str] | None,
        Field(description="The row that allowed it: tenant, role, area, phase, action."),
    ]
    reason: str


@dataclass(slots=True)
class BatchDecision(Decision):
    """A batch item's answer, under the item's id."""

    id: str


@dataclass(slots=True)
class BatchError:
    """A batch item that could not be answered, and why."""

    id: str
    error: ErrorObject


@dataclass(slots=True)
class BatchResults:
    """One result per item, in request order."""

    results: list[BatchDecision | BatchError]


BatchRow = dict[str, Any]
"""A batch result as a plain dict: a BatchDecision's fields in declaration order, or a
BatchError's (`batch_error`); see `batch_json`."""


def batch_error(item_id: str, code: str, message: str, field: str | None) -> BatchRow:
    """A BatchError's row: the item's id and its ErrorObject (`field` left out when None)."""
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"id": item_id, "error": error}


def batch_json(rows: list[BatchRow]) -> bytes:
    """BatchResults of plain rows as JSON: the bytes `to_json(BatchResults(...))` gives for the
    same results (tests/test_shapes.py holds them equal), at a sixth of the cost of building and
    serialising a dataclass per item, which a batch of 1000 pays a thousand times. A string
    orjson refuses (a lone surrogate) goes the declared way, to end as it always did."""
    try:
        return orjson.dumps({"results": rows})
    except orjson.JSONEncodeError:
        results = [_declared(row) for row in rows]
        return to_json(BatchResults(results))


def respond_batch(rows: list[BatchRow]) -> Response:
    """The answer of POST /authorize/batch, as `respond` would make it (`batch_json`)."""
    return Response(batch_json(rows), mimetype="application/json")


def _declared(row: BatchRow) -> BatchDecision | BatchError:
    """A row as the dataclass it stands for."""
    if "error" in row:
        return BatchError(row["id"], ErrorObject(**row["error"]))
    return BatchDecision(**row)


WRITE_ID = Field(
    description="The write's id in the decision log; a single write's answer also has it in the "
    "X-Decision-Id header, whether it succeeds or not."
)


@dataclass(frozen=True, slots=True)
class Written(assessments.State):
    """An assessment's state after a write (its creation, an advance, a reopen), with the write's
    id in the decision log."""

    decision_id: Annotated[str, WRITE_ID]


@dataclass(slots=True)
class BulkError:
    """An id of a bulk advance that did not advance, and the error a single advance gives; the
    decision id when the advance was tried (null for an id that is not one)."""

    id: str | None
    error: ErrorObject
    decision_id: Annotated[str | None, WRITE_ID] = None


@dataclass(slots=True)
class BulkResults:
    """Per id, in order: the new state, or the error."""

    results: list[Written | BulkError]


@dataclass(slots=True)
class Permissions:
    """Every action the role may take there, in the definition's order: the buttons to show."""

    tenant: str
    role: str
    area: str
    phase: str
    assessment: str | None
    actions: list[str]
    policy_version: int


@dataclass(slots=True)
class EventsPage:
    """A page of the feed, oldest first, and the cursor to ask with next."""

    events: list[FeedEntry]
    cursor: str


@dataclass(slots=True)
class WebhookMessage:
    """What a webhook delivery sends: one feed event as GET /events lists it, with its type
    and the moment it happened (the Standard Webhooks payload's three fields)."""

    type: str
    timestamp: datetime
    data: FeedEntry


@dataclass(slots=True)
class Health:
    """The service answers and its store is reachable at the newest schema."""

    status: str
    store: str


# -- AuthZEN 1.0 (authzen.py) ----------------------------------------------------------------


class Standard(Body):
    """An AuthZEN request body: strict types like every body, but unknown fields ignored, as the
    standard requires of every receiver (forward compatibility)."""

    model_config = ConfigDict(extra="ignore")


JsonObject = dict[str, Any]


class AuthzenSubject(Standard):
    """Who asks: the role is `properties.role`, else the `id` of a subject of type "role"."""

    type: str
    id: str
    properties: JsonObject | None = None


class AuthzenResource(Standard):
    """What about: {"type": "assessment", "id": "<assessment id>"} (at its current phase) or
    {"type": "phase", "id": "<area>/<phase>"}."""

    type: str
    id: str
    properties: JsonObject | None = None


class AuthzenAction(Standard):
    """What to do: {"name": "view" | "edit" | "advance" | "reopen"}."""

    name: str
    properties: JsonObject | None = None


class SoughtEntity(Standard):
    """The entity a search looks for: its `type`; an `id` is ignored, as the standard says."""

    type: str
    properties: JsonObject | None = None


class EvaluationBody(Standard):
    """POST .../access/v1/evaluation: may the subject take the action on the resource?"""

    subject: AuthzenSubject
    action: AuthzenAction
    resource: AuthzenResource
    context: JsonObject | None = None


class EvaluationItem(Standard):
    """One evaluation of a boxcar: each entity it names replaces the top-level default whole."""

    subject: AuthzenSubject | None = None
    action: AuthzenAction | None = None
    resource: AuthzenResource | None = None
    context: JsonObject | None = None


Semantic = Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"]


class EvaluationsOptions(Standard):
    """How a boxcar is executed: every item, or up to the first deny, or the first permit."""

    evaluations_semantic: Semantic = "execute_all"


class EvaluationsBody(EvaluationItem):
    """POST .../access/v1/evaluations: the top-level entities are defaults for the items; with
    no items, a single evaluation. Items are checked one by one: a bad item is its own deny."""

    evaluations: (
        Annotated[list[SkipValidation[EvaluationItem]], Field(max_length=MAX_BATCH)] | None
    ) = None
    options: EvaluationsOptions | None = None


class PageRequest(Standard):
    """Which page: none for the first; then the `next_token` of the previous answer, with the
    same entities and limit (the token carries the limit when it is left out)."""

    token: Annotated[str, Field(max_length=MAX_TOKEN)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] | None = Field(
        default=None, description=f"1-{MAX_PAGE} results per page; 100 when left out"
    )


class SubjectSearchBody(Standard):
    """POST .../access/v1/search/subject: which roles may take the action on the resource?"""

    subject: SoughtEntity
    action: AuthzenAction
    resource: AuthzenResource
    context: JsonObject | None = None
    page: PageRequest | None = None


class ResourceSearchBody(Standard):
    """POST .../access/v1/search/resource: on which assessments (or at which phases) may the
    subject take the action right now?"""

    subject: AuthzenSubject
    action: AuthzenAction
    resource: SoughtEntity
    context: JsonObject | None = None
    page: PageRequest | None = None


class ActionSearchBody(Standard):
    """POST .../access/v1/search/action: which actions may the subject take on the resource?"""

    subject: AuthzenSubject
    resource: AuthzenResource
    context: JsonObject | None = None
    page: PageRequest | None = None


@dataclass(slots=True)
class AccessError:
    """Why an evaluation could not be decided (an unknown role, action, area, phase or
    assessment): an HTTP-like status and a sentence. The decision is then false."""

    status: int
    message: str


@dataclass(slots=True)
class DecisionContext:
    """Why: the decision's id (as in the decision log), the policy version, the place it was
    decided at, the row that allowed it (absent on a deny) and the native reason; `code` and
    `reason` mark the deny that ended a deny_on_first_deny boxcar."""

    decision_id: str
    policy_version: int
    area: str
    phase: str
    reason_admin: dict[str, str]
    rule: list[str] | None = None
    code: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class ErrorContext:
    """An evaluation that could not be decided, and why."""

    error: AccessError
    code: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class AccessDecision:
    """An AuthZEN decision: a deny (or an undecidable question) is false, never an error."""

    decision: bool
    context: DecisionContext | ErrorContext


@dataclass(slots=True)
class AccessEvaluations:
    """The decisions in request order (cut after the deciding one by deny_on_first_deny or
    permit_on_first_permit); asked with no items, one decision's `decision` and `context`."""

    evaluations: list[AccessDecision] | None = None
    decision: bool | None = None
    context: DecisionContext | ErrorContext | None = None


@dataclass(slots=True)
class PageAnswer:
    """This page's size, and the token of the next page ("" after the last)."""

    next_token: str
    count: int


@dataclass(slots=True)
class FoundEntity:
    """A subject or resource a search found."""

    type: str
    id: str


@dataclass(slots=True)
class FoundAction:
    """An action a search found."""

    name: str


@dataclass(slots=True)
class FoundEntities:
    """A page of the subjects or resources found, in order."""

    page: PageAnswer
    results: list[FoundEntity]


@dataclass(slots=True)
class FoundActions:
    """A page of the actions found, in the definition's order."""

    page: PageAnswer
    results: list[FoundAction]


@dataclass(slots=True)
class PdpMetadata:
    """Where a tenant's AuthZEN endpoints are (the standard's PDP metadata)."""

    policy_decision_point: str
    access_evaluation_endpoint: str
    access_evaluations_endpoint: str
    search_subject_endpoint: str
    search_resource_endpoint: str
    search_action_endpoint: str


class OpenApiDocument(Answer):
    """OpenAPI 3.1, derived from these declarations."""

    model_config = ConfigDict(frozen=True, extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


# -- declaring and reading an operation ------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """What an endpoint accepts and answers: openapi.py describes it, body()/query() enforce it."""

    answers: Mapping[int, type]
    """The body of each success status: an Answer, or a domain record (a dataclass)."""
    errors: tuple[int, ...] = ()
    body: type[Body] | None = None
    query: type[Body] | None = None
    public: bool = False  # no API key needed
    text: str | None = None  # a text/plain answer instead of JSON: what it is


def operation(
    answers: Mapping[int, type],
    errors: tuple[int, ...] = (),
    *,
    body: type[Body] | None = None,
    query: type[Body] | None = None,
    public: bool = False,
    text: str | None = None,
) -> Callable[[F], F]:
    """Declare a view's shapes on it (the view's docstring is its summary)."""

    def declare(view: F) -> F:
        view.operation = Operation(answers, errors, body, query, public, text)  # type: ignore[attr-defined]
        return view

    return declare


def declared(view: Callable[..., Any]) -> Operation | None:
    """The operation declared on a view, if any."""
    found: Operation | None = getattr(view, "operation", None)
    return found


def _current() -> Operation:
    """The operation of the view serving this request."""
    found = declared(current_app.view_functions[request.endpoint or ""])
    if found is None:
        raise LookupError(f"{request.endpoint} declares no operation")
    return found


def body() -> Any:
    """The request's body, validated as its view declared. The bytes are kept on the request:
    a read view that is run once more after a lost connection (api.retrying) may have read the
    body already (a remembered key's decision parses it before its one statement)."""
    model = _current().body
    assert model is not None, f"{request.endpoint} declares no body"
    return parse_json(model, request.get_data(cache=True))


def query() -> Any:
    """The request's query string, validated as its view declared."""
    model = _current().query
    assert model is not None, f"{request.endpoint} declares no query"
    return validate(model, dict(request.args.items()))


def parse_json(model: type[M], data: bytes) -> M:
    """A body of bytes as `model`; InvalidRequest naming the first field at fault, or saying
    the body nests deeper than MAX_DEPTH (before anything is built of it)."""
    if too_deep(data):
        raise InvalidRequest(TOO_DEEP)
    try:
        return model.model_validate_json(data or b"null")
    except ValidationError as error:
        raise invalid(model, error) from None


_SKELETON = bytes(range(256)).translate(None, b'[]{}"')
"""Every byte but brackets and quotes: what translate() deletes to leave a body's skeleton."""
_SQUARE = bytes.maketrans(b"{}", b"[]")


def too_deep(data: bytes) -> bool:
    """True when a JSON text nests objects and arrays more than MAX_DEPTH deep. Counting the
    opening brackets answers almost every body at once (a question holds one). A body with more
    is reduced, at C speed, to its brackets outside strings (escaped backslashes and quotes
    dropped first, then what lies between quotes), and each pass drops its innermost pairs."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    if b"\\" in data:  # escapes pair from the left: \\ first, then \" (in a string either way)
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    quoted = data.translate(None, _SKELETON).translate(_SQUARE)
    skeleton = b"".join(quoted.split(b'"')[::2])
    for _ in range(MAX_DEPTH):
        skeleton = skeleton.replace(b"[]", b"")
    return b"[" in skeleton


def validate(model: type[M], data: Any) -> M:
    """Already-parsed data (a query string, a batch item) as `model`; InvalidRequest otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid(model, error) from None


def invalid(model: type[BaseModel], error: ValidationError) -> InvalidRequest:
    """The service's error for pydantic's first finding (an unknown field first of all); a
    field inside an object is named by its path (`subject.id`)."""
    details = error.errors(include_url=False, include_input=False)
    first = next((d for d in details if d["type"] == "extra_forbidden"), details[0])
    if not first["loc"]:
        return InvalidRequest(NOT_AN_OBJECT)
    name = ".".join(str(part) for part in first["loc"])
    return InvalidRequest(_message(model, name, first), field=name)


def _message(model: type[BaseModel], name: str, detail: ErrorDetails) -> str:
    """A sentence for one finding, in the words of the field's own description."""
    kind = detail["type"]
    if kind == "missing":
        return f"missing field {name!r}"
    if kind == "extra_forbidden":
        return f"unknown field {name!r}"
    if kind == FREE_TEXT:
        return f"{name} {detail['msg']}"
    description = _descriptions(model).get(name)
    if description and len(detail["loc"]) == 1:
        return f"{name} must be {description}"
    return f"{name}: {detail['msg']}"


@cache
def _descriptions(model: type[BaseModel]) -> dict[str, str]:
    """Each field's description as the JSON Schema gives it, an optional field's included (its
    description sits on the non-null member of the union)."""
    found: dict[str, str] = {}
    for name, schema in model.model_json_schema()["properties"].items():
        members = [schema, *schema.get("anyOf", [])]
        described = [m["description"] for m in members if "description" in m]
        if described:
            found[name] = described[0]
    return found


def respond(answer: object, status: int = 200, *, omit_null: bool = False) -> Response:
    """A JSON response of an answer or a domain record; `omit_null` leaves out every field
    that is None (AuthZEN answers: the standard omits a property rather than send null)."""
    return Response(
        to_json(answer, omit_null=omit_null), status=status, mimetype="application/json"
    )


def to_json(answer: object, *, omit_null: bool = False) -> bytes:
    """An answer or a domain record as JSON, serialised by its declaration."""
    if isinstance(answer, BaseModel):
        return answer.__pydantic_serializer__.to_json(answer, exclude_none=omit_null)
    kind: Any = type(answer)
    return adapter(kind).dump_json(answer, exclude_none=omit_null)


@cache
def adapter(kind: Any) -> TypeAdapter[Any]:
    """pydantic's validator and serialiser of a type, built once per process."""
    return TypeAdapter(kind)
