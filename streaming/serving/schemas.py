"""Request and response bodies of the serving API (pydantic), validated like events are.

The request models are static classes, validated with an :class:`ApiLimits`: a request's batch size, and the event
contract's bounds from Settings (``LIVELEARN_API_MAX_BATCH``, ``LIVELEARN_MAX_FEATURES``,
``LIVELEARN_MAX_STRING_LENGTH``, ``LIVELEARN_MAX_ABS_VALUE``). The limits of a validation are pydantic's validation
context (``model_validate(doc, context=limits)``), else the limits in force (:func:`using_limits`; an app puts its
own in force for each of its requests with :class:`UseLimits`, as FastAPI validates a body without a context), else
the defaults. The OpenAPI document states the limits in force where it is made. Version numbers are strict integers
from 1 to 2^53 - 1 (``true``, ``1.0`` and ``"1"`` are not version 1); in a path they are plain digits
(``/versions/5``: not ``05``, ``+5``, ``5.0`` or ``5%20``), so nothing else reads as a version. ``force`` is a JSON
boolean, feature names are not empty, and a KServe v2 tensor's ``shape`` is ``[batch]`` or ``[batch, 1]``; the
OpenAPI document states each of these limits.

>>> limits = ApiLimits(max_batch=2)
>>> PredictRequest.model_validate({"features": {"pages": 3, "weekend": True}}, context=limits).features
{'pages': 3, 'weekend': 'true'}
>>> to_rows(InferRequest.model_validate({"inputs": [
...     {"name": "pages", "shape": [2], "datatype": "INT64", "data": [3, 4]},
...     {"name": "weekend", "shape": [2, 1], "datatype": "BOOL", "data": [True, 0]}]}, context=limits))
[{'pages': 3, 'weekend': 'true'}, {'pages': 4, 'weekend': 'false'}]

A tensor's declared shape is checked against its data and the batch limit before anything is allocated:

>>> InferRequest.model_validate(
...     {"inputs": [{"name": "x", "shape": [20000000], "datatype": "FP64", "data": []}]}, context=limits)
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for InferRequest
inputs.0
  Value error, shape [20000000]: batch 20000000 is over the limit of 2 (LIVELEARN_API_MAX_BATCH)...
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema
from starlette.types import ASGIApp, Receive, Scope, Send

from snapshotter.keys import MAX_VERSION
from streaming.config import EventLimitSettings, ServingSettings
from streaming.errors import EventError
from streaming.events import EventLimits, check_feature

__all__ = [
    "MAX_ACTOR_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_VERSION",
    "AdminRequest",
    "ApiLimits",
    "ArmRequest",
    "BatchRequest",
    "BatchResponse",
    "CanaryRequest",
    "ChallengerRequest",
    "ErrorBody",
    "InferInput",
    "InferRequest",
    "PinRequest",
    "PredictInstance",
    "PredictRequest",
    "Prediction",
    "RequestModels",
    "RollbackRequest",
    "Scalar",
    "UseLimits",
    "ValidationErrorBody",
    "ValidationProblem",
    "VersionInPath",
    "infer_user_key",
    "limits_of",
    "to_rows",
    "using_limits",
]

MAX_ACTOR_LENGTH = 200
MAX_REASON_LENGTH = 1000
Scalar = bool | int | float | str
Version = Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)]
_PLAIN_NUMBER = re.compile(r"0|[1-9][0-9]*")  # ASCII digits, no sign, space, leading zero, point or exponent


def _plain_number(value: Any) -> Any:
    """A version number in a path as written: ``5``, never ``05``, ``+5``, ``5.0``, ``0x5`` or ``5 `` (which a
    lax integer parser would all read as 5), so one version has one URL."""
    if isinstance(value, str) and not _PLAIN_NUMBER.fullmatch(value):
        raise ValueError("write the version number in plain digits, e.g. 5 (no sign, space, leading zero or point)")
    return value


#: A version number in a route's path; FastAPI states its bounds in the OpenAPI document (the Path comes first:
#: after another validator, FastAPI would publish its bounds as ``ge``/``le`` instead of ``minimum``/``maximum``).
VersionInPath = Annotated[
    int,
    Path(ge=1, le=MAX_VERSION, description="A version number in plain digits, e.g. 5 (not 05, +5, 5.0 or 5%20)."),
    BeforeValidator(_plain_number),
]
Datatype = Literal[
    "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64", "BYTES"
]


@dataclasses.dataclass(frozen=True, slots=True)
class ApiLimits:
    """Bounds on one request: a batch size, and the event contract's bounds for each instance."""

    max_batch: int = 1000
    events: EventLimits = dataclasses.field(default_factory=EventLimits)
    #: the validators of the fields these limits bound, made on first use (equal limits share them)
    _validators: dict[Callable[[ApiLimits], Any], TypeAdapter[Any]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_settings(cls, serving: ServingSettings, limits: EventLimitSettings) -> ApiLimits:
        """The limits of an app: its batch size (``serving``) and the event contract's bounds (``limits``)."""
        return cls(max_batch=serving.max_batch, events=EventLimits.from_settings(limits))

    def validator(self, bounded: Callable[[ApiLimits], Any]) -> TypeAdapter[Any]:
        """The validator of the type ``bounded(self)``."""
        adapter = self._validators.get(bounded)
        if adapter is None:
            adapter = self._validators[bounded] = _adapter(bounded, self)
        return adapter


# -- the limits of a validation ---------------------------------------------------------------------
_DEFAULT_LIMITS = ApiLimits()  # Settings' defaults
_IN_FORCE: contextvars.ContextVar[ApiLimits] = contextvars.ContextVar("livelearn_api_limits", default=_DEFAULT_LIMITS)


@contextlib.contextmanager
def using_limits(limits: ApiLimits) -> Iterator[None]:
    """Put ``limits`` in force for the ``with`` block (in this thread or task): validations without a context and
    the JSON schemas made there use them.

    >>> with using_limits(ApiLimits(max_batch=1)):
    ...     BatchRequest.model_json_schema()["properties"]["instances"]["maxItems"]
    1
    """
    token = _IN_FORCE.set(limits)
    try:
        yield
    finally:
        _IN_FORCE.reset(token)


def limits_of(info: ValidationInfo) -> ApiLimits:
    """The limits a validation applies: its context's, else those in force."""
    return info.context if isinstance(info.context, ApiLimits) else _IN_FORCE.get()


class UseLimits:
    """Pure ASGI middleware: ``limits`` are in force for every request it passes on, so the request models apply the
    app's limits wherever a body is validated (FastAPI validates without a context)."""

    def __init__(self, app: ASGIApp, limits: ApiLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _IN_FORCE.set(self.limits)  # set in this request's task: other requests' tasks keep their own
        try:
            await self.app(scope, receive, send)
        finally:
            _IN_FORCE.reset(token)


#: What a limit sets in a JSON schema (copied from a bounded type's schema into the field's).
_BOUND_KEYWORDS = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties", "propertyNames"}
)


@functools.lru_cache(maxsize=64)
def _adapter(bounded: Callable[[ApiLimits], Any], limits: ApiLimits) -> TypeAdapter[Any]:
    return TypeAdapter(bounded(limits))


@functools.lru_cache(maxsize=64)
def _bounds(bounded: Callable[[ApiLimits], Any], limits: ApiLimits) -> dict[str, Any]:
    return {k: v for k, v in _adapter(bounded, limits).json_schema().items() if k in _BOUND_KEYWORDS}


@dataclasses.dataclass(frozen=True)
class _Limited:
    """A field's metadata: the field is validated as ``bounded(limits)`` (its type, bounded by the limits of the
    validation), and its JSON schema states the bounds of the limits in force. One definition of each bound, so
    the document says what is enforced; ``bounded`` uses pydantic's own constraints, so a breach is reported as
    before (type, message and place)."""

    bounded: Callable[[ApiLimits], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        bounded = self.bounded

        def validate(value: Any, _static: Any, info: ValidationInfo) -> Any:
            limits = limits_of(info)
            return limits.validator(bounded).validate_python(value, context=limits)  # nested models: the same limits

        return core_schema.with_info_wrap_validator_function(validate, handler(source))  # the schema: the static type

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(copy.deepcopy(_bounds(self.bounded, _IN_FORCE.get())))  # the cached one stays as made
        return json_schema


def _feature_checker(limits: EventLimits) -> Callable[[dict[str, Scalar]], dict[str, Scalar]]:
    """A validator that applies the event contract to a feature map (booleans become categories)."""

    def check(features: dict[str, Scalar]) -> dict[str, Scalar]:
        try:
            return {name: check_feature(name, value, limits) for name, value in features.items()}
        except EventError as exc:
            raise ValueError(exc.detail) from None

    return check


# -- responses and admin bodies (no settings involved) ----------------------------------------------
class ErrorBody(BaseModel):
    """Every error but a 422: one sentence saying what went wrong and what to do."""

    detail: str


class ValidationProblem(BaseModel):
    """One problem of an invalid request; the input itself is never echoed."""

    loc: list[str | int] = Field(description="Where: 'body' then keys and indexes.")
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """A 422: at most 20 problems (then one of type too_many_errors counting the rest)."""

    detail: list[ValidationProblem]


class Prediction(BaseModel):
    probability: float
    label: bool
    version: int
    arm: str = Field(description="The arm of the version that answered: the champion's, or the canary's.")
    model: str
    event_id: str | None = None


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    version: int


class AdminRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_REASON_LENGTH, description="Why; recorded in the audit log.")
    actor: str | None = Field(None, max_length=MAX_ACTOR_LENGTH, description="Who, recorded with the caller.")


class PinRequest(AdminRequest):
    version: Version = Field(description="Version to hold serving on.")
    force: StrictBool = Field(
        False, description="true or false: pin even a version quarantined by an incident (audited as forced)."
    )


class RollbackRequest(AdminRequest):
    to: Version | None = Field(None, description="Target version (default: newest stable older than the head).")


class ChallengerRequest(AdminRequest):
    declaration: str = Field(
        min_length=1, max_length=512, description="NAME:KEY=VALUE,... e.g. fast:lr=0.05 (see LIVELEARN_CHALLENGERS)."
    )


class ArmRequest(AdminRequest):
    arm: str = Field(pattern=r"^[a-z0-9_-]{1,32}$", description="A challenger's name (or the former champion's).")
    force: StrictBool = Field(
        False, description="promote only: true promotes whatever the comparison's verdict (audited as forced)."
    )


#: A canary's percent: 0 to 100 (a JSON number; its bucket grain is 0.01).
Percent = Annotated[float, Field(ge=0, le=100, strict=True)]


class CanaryRequest(AdminRequest):
    arm: str = Field(
        pattern=r"^[a-z0-9_-]{1,32}$",
        description="An arm the serving version holds: a challenger's name, or its own model's (base).",
    )
    percent: Percent = Field(description="Share of the requests with a user key sent to the arm.")
    steps: list[Annotated[float, Field(gt=0, le=100, strict=True)]] | None = Field(
        None, min_length=1, max_length=10, description="Increasing percents `next` goes through (default 5,25,50,100)."
    )


# -- Open Inference Protocol (KServe v2) tensors -----------------------------------------------------
def _check_shape(shape: list[int], data_length: int, max_batch: int) -> int:
    """The batch of a feature column shaped ``[batch]`` or ``[batch, 1]``, checked before anything is allocated
    (every dimension is at least 1 already: the field's item type says so)."""
    if len(shape) == 2 and shape[1] != 1:
        raise ValueError(f"shape {shape}: a feature column is [batch] or [batch, 1]")
    batch = shape[0]
    if batch > max_batch:
        raise ValueError(
            f"shape {shape}: batch {batch} is over the limit of {max_batch} (LIVELEARN_API_MAX_BATCH); "
            "send smaller requests"
        )
    if data_length != batch:
        raise ValueError(f"shape {shape} says {batch} values, data has {data_length}")
    return batch


def _cell(datatype: str, value: Any) -> Scalar:
    """One tensor value as a feature value of ``datatype``; ``ValueError`` names the expected type."""
    if datatype == "BOOL":
        if value is True or value is False or (type(value) is int and value in (0, 1)):
            return bool(value)
        raise ValueError("is not a BOOL (true, false, 0 or 1)")
    if datatype == "BYTES":
        if isinstance(value, str):
            return value
        raise ValueError("is not a BYTES value (a JSON string)")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"is not a {datatype} number")
    if datatype.startswith(("INT", "UINT")) and not isinstance(value, int):
        raise ValueError(f"is not an integer ({datatype})")
    if datatype.startswith("UINT") and value < 0:
        raise ValueError(f"is negative ({datatype})")
    bounds = _RANGES.get(datatype)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"is outside {datatype}'s range ({bounds[0]:g} to {bounds[1]:g})")
    return value


#: each sized datatype's range (FP32 and FP64 are bounded by the event contract's ``max_abs_value`` afterwards)
_RANGES: dict[str, tuple[float, float]] = {
    **{f"INT{bits}": (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (0, 2**bits - 1) for bits in (8, 16, 32, 64)},
    "FP16": (-65504.0, 65504.0),
}


def _shape_schema(max_batch: int) -> dict[str, Any]:
    """What :func:`_check_shape` checks, as JSON Schema for the OpenAPI document: ``[batch]`` or ``[batch, 1]``,
    batch from 1 to ``max_batch`` (that it is the number of values in ``data`` only words can say)."""
    return {
        "prefixItems": [{"type": "integer", "minimum": 1, "maximum": max_batch}, {"const": 1}],
        "items": False,
    }


def _column(name: str, datatype: str, data: list[Any], limits: EventLimits) -> list[Scalar]:
    """The values of one feature column, each checked as its datatype and as an event feature."""
    values = []
    for j, value in enumerate(data):
        try:
            values.append(check_feature(name, _cell(datatype, value), limits))
        except ValueError as exc:
            raise ValueError(f"data[{j}] {exc}") from None
        except EventError as exc:
            raise ValueError(f"data[{j}]: {exc.detail}") from None
    return values


def _check_inputs(inputs: list[InferInput]) -> None:
    """Every input is a distinct feature of the same batch."""
    first = inputs[0]
    seen: set[str] = set()
    for i, column in enumerate(inputs):
        if column.name in seen:
            raise ValueError(f"inputs[{i}].name repeats an earlier input; send one input per feature")
        seen.add(column.name)
        if column.shape[0] != first.shape[0]:
            raise ValueError(
                f"inputs[{i}] has batch {column.shape[0]}, inputs[0] has {first.shape[0]}; "
                "every input must have the same batch"
            )


# -- request models: the bounds each field takes from the limits --------------------------------------
def _name(limits: ApiLimits) -> Any:
    """A feature name or an id: not empty, at most ``LIVELEARN_MAX_STRING_LENGTH`` characters."""
    return Annotated[str, StringConstraints(min_length=1, max_length=limits.events.max_string_length)]


def _features(limits: ApiLimits) -> Any:
    events = limits.events
    Name = Annotated[str, StringConstraints(min_length=1, max_length=events.max_string_length)]
    return Annotated[
        dict[Name, Scalar], Field(max_length=events.max_features), AfterValidator(_feature_checker(events))
    ]


def _instances(limits: ApiLimits) -> Any:
    return Annotated[list[PredictInstance], Field(min_length=1, max_length=limits.max_batch)]


def _column_data(limits: ApiLimits) -> Any:
    return Annotated[list[Any], Field(max_length=limits.max_batch)]


def _inputs(limits: ApiLimits) -> Any:
    return Annotated[list[InferInput], Field(min_length=1, max_length=limits.events.max_features)]


def _stated_shape(schema: dict[str, Any]) -> None:
    schema.update(_shape_schema(_IN_FORCE.get().max_batch))


Id = Annotated[str, _Limited(_name)]


class PredictInstance(BaseModel):
    features: Annotated[dict[str, Scalar], _Limited(_features)] = Field(
        description="name -> number | string | bool, as in events"
    )
    event_id: Id | None = Field(None, description="Echoed back with the prediction.")
    user_id: Id | None = Field(
        None,
        description="The key a canary split is sticky by (a visitor, a session): one key always gets one arm. "
        "Without it the champion answers.",
        exclude=True,  # read to pick the arm, never echoed: a request's dump holds what it held before
    )


class PredictRequest(PredictInstance):
    version: Version | None = Field(None, description="Score with this version instead of the serving one.")


class BatchRequest(BaseModel):
    instances: Annotated[list[PredictInstance], _Limited(_instances)]
    version: Version | None = Field(None, description="Score with this version instead of the serving one.")


class InferInput(BaseModel):
    name: Annotated[str, _Limited(_name)] = Field(description="The feature name.")
    shape: list[Annotated[StrictInt, Field(ge=1)]] = Field(
        min_length=1,
        max_length=2,
        description="[batch] or [batch, 1]: batch is the number of values in data.",
        json_schema_extra=_stated_shape,
    )
    datatype: Datatype
    data: Annotated[list[Any], _Limited(_column_data)] = Field(description="One value per row, flat.")

    @model_validator(mode="after")
    def _valid_column(self, info: ValidationInfo) -> InferInput:
        limits = limits_of(info)
        _check_shape(self.shape, len(self.data), limits.max_batch)
        self.data = _column(self.name, self.datatype, self.data, limits.events)
        return self


class InferRequest(BaseModel):
    id: Id | None = Field(None, description="Echoed back in the response.")
    inputs: Annotated[list[InferInput], _Limited(_inputs)] = Field(description="One input tensor per feature.")
    parameters: dict[str, Any] | None = Field(
        None, description="user_id (a string): the key a canary split is sticky by, for every row of the request."
    )

    @field_validator("parameters")
    @classmethod
    def _user_key(cls, parameters: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        key = (parameters or {}).get("user_id")
        if key is not None and not (isinstance(key, str) and 1 <= len(key) <= limits_of(info).events.max_string_length):
            raise ValueError(f"user_id must be a string of 1 to {limits_of(info).events.max_string_length} characters")
        return parameters

    @field_validator("inputs")
    @classmethod
    def _same_batch(cls, inputs: list[InferInput]) -> list[InferInput]:
        _check_inputs(inputs)
        return inputs


@dataclasses.dataclass(frozen=True)
class RequestModels:
    """The request bodies of one app and the limits it puts in force while it validates them (:class:`UseLimits`);
    the classes are the same for every app."""

    limits: ApiLimits = dataclasses.field(default_factory=ApiLimits)
    predict: type[PredictRequest] = PredictRequest
    batch: type[BatchRequest] = BatchRequest
    infer: type[InferRequest] = InferRequest


def to_rows(request: InferRequest) -> list[dict[str, Scalar]]:
    """One feature dict per row of a validated infer request (every input is a checked column)."""
    batch = request.inputs[0].shape[0]
    rows: list[dict[str, Scalar]] = [{} for _ in range(batch)]
    for column in request.inputs:
        for row, value in zip(rows, column.data, strict=True):
            row[column.name] = value
    return rows


def infer_user_key(request: InferRequest) -> str | None:
    """The user key of a validated infer request (``parameters.user_id``), or ``None``.

    >>> infer_user_key(InferRequest.model_validate({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64",
    ...     "data": [1.0]}], "parameters": {"user_id": "visitor-42"}}))
    'visitor-42'
    """
    key = (request.parameters or {}).get("user_id")
    return key if isinstance(key, str) else None
