"""Request and response bodies of the serving API (pydantic), validated like events are."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt, field_validator

from streaming.errors import EventError
from streaming.events import EventLimits, check_feature

__all__ = [
    "PredictRequest", "Prediction", "BatchRequest", "BatchResponse", "AdminRequest", "PinRequest",
    "RollbackRequest", "InferInput", "InferRequest", "to_rows",
]

_LIMITS = EventLimits()
Scalar = bool | int | float | str


def _check_features(features: dict[str, Scalar]) -> dict[str, Scalar]:
    if len(features) > _LIMITS.max_features:
        raise ValueError(f"{len(features)} features, limit {_LIMITS.max_features}")
    try:
        return {name: check_feature(name, value, _LIMITS) for name, value in features.items()}
    except EventError as exc:
        raise ValueError(exc.detail) from None


class BatchInstance(BaseModel):
    features: dict[str, Scalar] = Field(description="name -> number | string | bool, as in events")
    event_id: str | None = None

    @field_validator("features")
    @classmethod
    def _valid_features(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        return _check_features(value)


class PredictRequest(BatchInstance):
    version: StrictInt | None = Field(None, ge=1, description="Score with this version instead of the serving one.")


class Prediction(BaseModel):
    probability: float
    label: bool
    version: int
    model: str
    event_id: str | None = None


class BatchRequest(BaseModel):
    instances: list[BatchInstance] = Field(min_length=1, max_length=10_000)
    version: StrictInt | None = Field(None, ge=1)


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    version: int


class AdminRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="Why; recorded in the audit log.")
    actor: str | None = Field(None, max_length=200)


class PinRequest(AdminRequest):
    version: StrictInt = Field(ge=1)


class RollbackRequest(AdminRequest):
    to: StrictInt | None = Field(None, ge=1)


# -- Open Inference Protocol (KServe v2) ------------------------------------------------------------
Datatype = Literal["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
                   "FP16", "FP32", "FP64", "BYTES"]


class InferInput(BaseModel):
    name: str = Field(min_length=1)
    shape: list[StrictInt] = Field(min_length=1, max_length=2)
    datatype: Datatype
    data: list[Any]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1)
    parameters: dict[str, Any] | None = None


def to_rows(request: InferRequest) -> list[dict[str, Scalar]]:
    """One feature dict per row: each input tensor is a feature column of shape ``[batch]`` or ``[batch, 1]``."""
    batch = request.inputs[0].shape[0]
    rows: list[dict[str, Scalar]] = [{} for _ in range(batch)]
    for i, column in enumerate(request.inputs):
        if column.shape[0] != batch or (len(column.shape) == 2 and column.shape[1] != 1):
            raise ValueError(f"inputs[{i}].shape {column.shape}: every input must be [batch] or [batch, 1] "
                             f"with the same batch {batch}")
        if len(column.data) != batch:
            raise ValueError(f"inputs[{i}].data has {len(column.data)} values, shape says {batch}")
        for row, value in zip(rows, column.data):
            if column.datatype == "BOOL":
                if value not in (True, False):  # also admits 0 and 1
                    raise ValueError(f"inputs[{i}].data: {value!r} is not a BOOL (true/false/0/1)")
                value = bool(value)
            elif column.datatype == "BYTES":
                value = str(value)
            elif (not isinstance(value, int | float) or isinstance(value, bool) or abs(value) > _LIMITS.max_abs_value
                  or not math.isfinite(value)):
                raise ValueError(f"inputs[{i}].data: {value!r} is not a finite {column.datatype}")
            row[column.name] = value
    try:
        return [_check_features(row) for row in rows]
    except ValueError as exc:
        raise ValueError(f"inputs: {exc}") from None
