"""Request and response bodies of the serving API (pydantic), validated like events are.

The request models are built for each app by :func:`request_models` from :class:`ApiLimits`, which come
from Settings (``LIVELEARN_API_MAX_BATCH``, ``LIVELEARN_MAX_FEATURES``, ``LIVELEARN_MAX_STRING_LENGTH``,
``LIVELEARN_MAX_ABS_VALUE``): the API applies the limits of the event contract, and its OpenAPI document
shows them. Version numbers are strict integers from 1 to 2^53 - 1 (``true``, ``1.0`` and ``"1"`` are not
version 1); in a path they are plain digits (``/versions/5``: not ``05``, ``+5``, ``5.0`` or ``5%20``), so
nothing else reads as a version. ``force`` is a JSON boolean, feature names are not empty, and a KServe v2 tensor's
``shape`` is ``[batch]`` or ``[batch, 1]``; the OpenAPI document states each of these limits.

>>> models = request_models(ApiLimits(max_batch=2))
>>> models.predict.model_validate({"features": {"pages": 3, "weekend": True}}).features
{'pages': 3, 'weekend': 'true'}
>>> to_rows(models.infer.model_validate({"inputs": [
...     {"name": "pages", "shape": [2], "datatype": "INT64", "data": [3, 4]},
...     {"name": "weekend", "shape": [2, 1], "datatype": "BOOL", "data": [True, 0]}]}))
[{'pages': 3, 'weekend': 'true'}, {'pages': 4, 'weekend': 'false'}]

A tensor's declared shape is checked against its data and the batch limit before anything is allocated:

>>> models.infer.model_validate({"inputs": [{"name": "x", "shape": [20000000], "datatype": "FP64", "data": []}]})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for InferRequest
inputs.0
  Value error, shape [20000000]: batch 20000000 is over the limit of 2 (LIVELEARN_API_MAX_BATCH)...
"""

# No `from __future__ import annotations`: the request models are classes made inside a function, and
# pydantic resolves their annotations eagerly there.

import dataclasses
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from streaming.config import Settings
from streaming.errors import EventError
from streaming.events import EventLimits, check_feature

__all__ = [
    "MAX_ACTOR_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_VERSION",
    "AdminRequest",
    "ApiLimits",
    "BatchResponse",
    "ErrorBody",
    "PinRequest",
    "Prediction",
    "RequestModels",
    "RollbackRequest",
    "Scalar",
    "ValidationErrorBody",
    "ValidationProblem",
    "VersionInPath",
    "request_models",
    "to_rows",
]

MAX_ACTOR_LENGTH = 200
MAX_REASON_LENGTH = 1000
#: The largest version number: the largest integer every JSON client reads exactly (and a float states exactly in
#: the OpenAPI document); Redis's version counter would take 70 million years at 4 versions/s to get there.
MAX_VERSION = 2**53 - 1
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

    @classmethod
    def from_settings(cls, settings: Settings) -> "ApiLimits":
        return cls(max_batch=settings.api_max_batch, events=EventLimits.from_settings(settings))


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
    return value


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


def _check_inputs(inputs: list[Any]) -> None:
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


# -- request models built from the limits ------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RequestModels:
    """The request bodies of one app, with its limits."""

    predict: type[BaseModel]
    batch: type[BaseModel]
    infer: type[BaseModel]


def request_models(limits: ApiLimits) -> RequestModels:
    """Request models that enforce ``limits``; pydantic reports every breach as a 422 naming the field."""
    events = limits.events
    Id = Annotated[str, StringConstraints(min_length=1, max_length=events.max_string_length)]
    Name = Annotated[str, StringConstraints(min_length=1, max_length=events.max_string_length)]
    Features = Annotated[
        dict[Name, Scalar],
        Field(max_length=events.max_features, description="name -> number | string | bool, as in events"),
        AfterValidator(_feature_checker(events)),
    ]

    class PredictInstance(BaseModel):
        features: Features
        event_id: Id | None = Field(None, description="Echoed back with the prediction.")

    class PredictRequest(PredictInstance):
        version: Version | None = Field(None, description="Score with this version instead of the serving one.")

    class BatchRequest(BaseModel):
        instances: list[PredictInstance] = Field(min_length=1, max_length=limits.max_batch)
        version: Version | None = Field(None, description="Score with this version instead of the serving one.")

    class InferInput(BaseModel):
        name: str = Field(min_length=1, max_length=events.max_string_length, description="The feature name.")
        shape: list[Annotated[StrictInt, Field(ge=1)]] = Field(
            min_length=1,
            max_length=2,
            description="[batch] or [batch, 1]: batch is the number of values in data.",
            json_schema_extra=_shape_schema(limits.max_batch),
        )
        datatype: Datatype
        data: list[Any] = Field(max_length=limits.max_batch, description="One value per row, flat.")

        @model_validator(mode="after")
        def _valid_column(self) -> "InferInput":
            _check_shape(self.shape, len(self.data), limits.max_batch)
            self.data = _column(self.name, self.datatype, self.data, events)
            return self

    class InferRequest(BaseModel):
        id: Id | None = Field(None, description="Echoed back in the response.")
        inputs: list[InferInput] = Field(
            min_length=1, max_length=events.max_features, description="One input tensor per feature."
        )
        parameters: dict[str, Any] | None = None

        @field_validator("inputs")
        @classmethod
        def _same_batch(cls, inputs: list[InferInput]) -> list[InferInput]:
            _check_inputs(inputs)
            return inputs

    return RequestModels(predict=PredictRequest, batch=BatchRequest, infer=InferRequest)


def to_rows(request: Any) -> list[dict[str, Scalar]]:
    """One feature dict per row of a validated infer request (every input is a checked column)."""
    batch = request.inputs[0].shape[0]
    rows: list[dict[str, Scalar]] = [{} for _ in range(batch)]
    for column in request.inputs:
        for row, value in zip(rows, column.data, strict=True):
            row[column.name] = value
    return rows
