import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    ALLOWED: _ClassVar[Outcome]
    UNKNOWN_CUSTOMER: _ClassVar[Outcome]
    NOT_ENTITLED: _ClassVar[Outcome]
    QUOTA_EXHAUSTED: _ClassVar[Outcome]
    RATE_LIMITED: _ClassVar[Outcome]
    SPEND_CAP: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
ALLOWED: Outcome
UNKNOWN_CUSTOMER: Outcome
NOT_ENTITLED: Outcome
QUOTA_EXHAUSTED: Outcome
RATE_LIMITED: Outcome
SPEND_CAP: Outcome

class Meter(_message.Message):
    __slots__ = ("feature", "quantity", "reserve")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    feature: str
    quantity: int
    reserve: bool
    def __init__(self, feature: _Optional[str] = ..., quantity: _Optional[int] = ..., reserve: _Optional[bool] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("api_key", "customer_id", "requires", "meters", "idempotency_key", "request_id")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    customer_id: str
    requires: _containers.RepeatedScalarFieldContainer[str]
    meters: _containers.RepeatedCompositeFieldContainer[Meter]
    idempotency_key: str
    request_id: str
    def __init__(self, api_key: _Optional[str] = ..., customer_id: _Optional[str] = ..., requires: _Optional[_Iterable[str]] = ..., meters: _Optional[_Iterable[_Union[Meter, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class Limit(_message.Message):
    __slots__ = ("kind", "feature", "limit", "used", "remaining", "reset_at", "window_seconds")
    KIND_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_AT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    feature: str
    limit: int
    used: int
    remaining: int
    reset_at: _timestamp_pb2.Timestamp
    window_seconds: int
    def __init__(self, kind: _Optional[str] = ..., feature: _Optional[str] = ..., limit: _Optional[int] = ..., used: _Optional[int] = ..., remaining: _Optional[int] = ..., reset_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_seconds: _Optional[int] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("allowed", "outcome", "decision_id", "customer_id", "plan", "feature", "limits", "denied_by", "retry_after_seconds", "cost_nano", "currency", "overage", "reservation_id", "replayed", "config_headers", "http_status", "problem_json")
    class ConfigHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DENIED_BY_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COST_NANO_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HEADERS_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_JSON_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    outcome: Outcome
    decision_id: str
    customer_id: str
    plan: str
    feature: str
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    denied_by: Limit
    retry_after_seconds: float
    cost_nano: int
    currency: str
    overage: _containers.RepeatedScalarFieldContainer[str]
    reservation_id: str
    replayed: bool
    config_headers: _containers.ScalarMap[str, str]
    http_status: int
    problem_json: str
    def __init__(self, allowed: _Optional[bool] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., decision_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., plan: _Optional[str] = ..., feature: _Optional[str] = ..., limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ..., denied_by: _Optional[_Union[Limit, _Mapping]] = ..., retry_after_seconds: _Optional[float] = ..., cost_nano: _Optional[int] = ..., currency: _Optional[str] = ..., overage: _Optional[_Iterable[str]] = ..., reservation_id: _Optional[str] = ..., replayed: _Optional[bool] = ..., config_headers: _Optional[_Mapping[str, str]] = ..., http_status: _Optional[int] = ..., problem_json: _Optional[str] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("customer_id", "reservation_id", "actual", "request_id")
    class ActualEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    reservation_id: str
    actual: _containers.ScalarMap[str, int]
    request_id: str
    def __init__(self, customer_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., actual: _Optional[_Mapping[str, int]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("status", "deltas", "cost_delta_nano")
    class DeltasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    COST_DELTA_NANO_FIELD_NUMBER: _ClassVar[int]
    status: str
    deltas: _containers.ScalarMap[str, int]
    cost_delta_nano: int
    def __init__(self, status: _Optional[str] = ..., deltas: _Optional[_Mapping[str, int]] = ..., cost_delta_nano: _Optional[int] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("customer_id", "plan", "limits")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    plan: str
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    def __init__(self, customer_id: _Optional[str] = ..., plan: _Optional[str] = ..., limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ...) -> None: ...

class WatchUsageRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class UsageEvent(_message.Message):
    __slots__ = ("id", "kind", "customer_id", "plan", "feature", "unit", "quantity", "granted", "billable", "amount_nano", "currency", "decision_id", "request_id", "idempotency_key", "time")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    BILLABLE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_NANO_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    customer_id: str
    plan: str
    feature: str
    unit: str
    quantity: int
    granted: int
    billable: int
    amount_nano: int
    currency: str
    decision_id: str
    request_id: str
    idempotency_key: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., customer_id: _Optional[str] = ..., plan: _Optional[str] = ..., feature: _Optional[str] = ..., unit: _Optional[str] = ..., quantity: _Optional[int] = ..., granted: _Optional[int] = ..., billable: _Optional[int] = ..., amount_nano: _Optional[int] = ..., currency: _Optional[str] = ..., decision_id: _Optional[str] = ..., request_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
