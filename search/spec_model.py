"""The pydantic base of a JobSpec's parts: the JSON shape a user sends, which the OpenAPI schema shows.

A part's model checks the shape: which keys, and which JSON types (strictly: true is not 1, "10" is
not 10). Each rule on values is written once, where the part is parsed: a strategy's options model
holds its bounds itself; the space's and early stopping's rules (names, ranges, what goes with
what, what depends on the job's length) are their parse functions', which read the validated part.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, model_serializer, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError


def invalid(title: str, errors: list[tuple[tuple[str | int, ...], str, str, Any]]) -> ValidationError:
    """A ValidationError of (loc, type, message, input) errors, locs relative to where it is raised."""
    return ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError(type_, message), loc=loc, input=value)
        for loc, type_, message, value in errors])


class SpecModel(BaseModel):
    """A JSON object of a JobSpec: strict types, no unknown keys, and errors that say what is allowed."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # How errors call this object and its keys: 'must be <shape>', 'unknown <key_name>; allowed: [...]'.
    shape: ClassVar[str] = "an object"
    key_name: ClassVar[str] = "key"

    @model_validator(mode="wrap")
    @classmethod
    def _name_what_is_allowed(cls, raw: Any, handler: Any) -> Any:
        if not isinstance(raw, (dict, cls)):
            raise invalid(cls.__name__, [((), "model_type", f"must be {cls.shape}", raw)])
        try:
            return handler(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            unknown = [e["type"] == "extra_forbidden" and len(e["loc"]) == 1 for e in errors]
            if not any(unknown):
                raise
            # Pydantic's "Extra inputs are not permitted" does not say which keys are.
            raise invalid(exc.title, [(e["loc"], e["type"], cls._unknown(e["loc"][0]) if is_unknown else e["msg"],
                                       e["input"]) for e, is_unknown in zip(errors, unknown)]) from None

    @classmethod
    def _unknown(cls, key: str | int) -> str:
        """Why a key is unknown, and where it belongs: a key of a part written a level too high
        (``lr`` beside ``workload``) names that part; a near miss (``epoch``) gets its likely name."""
        allowed = sorted(cls.model_fields)
        says = f"unknown {cls.key_name} {str(key)!r}"
        home = next((name for name, part in cls._parts() if str(key) in part.model_fields), None)
        if home is not None:
            return f"{says}: it belongs under {home!r} ({home}.{key})"
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}? allowed" if close else "; allowed"
        return f"{says}{hint}: {allowed or 'none'}"

    @classmethod
    def _parts(cls) -> Iterator[tuple[str, type[SpecModel]]]:
        """(field, model) for each field holding an object of its own (each model of a union)."""
        for name, field in cls.model_fields.items():
            stack: list[Any] = [field.annotation]
            while stack:
                kind = stack.pop()
                if isinstance(kind, type) and issubclass(kind, SpecModel):
                    yield name, kind
                else:
                    stack.extend(get_args(kind))


class SpecPart(SpecModel):
    """A part stored as the user sent it: the keys left out stay out (the parsers fill the defaults,
    which may depend on the job), so a job's spec reads back in the shape it was written."""

    @model_serializer(mode="wrap")
    def _as_sent(self, handler: Any) -> Any:
        return {key: self._sent_value(key, value) for key, value in handler(self).items()
                if key in self.model_fields_set}

    def _sent_value(self, key: str, value: Any) -> Any:
        """The value of ``key`` as sent (a part that expands a shorthand while validating gives it back)."""
        return value

    def as_sent(self) -> dict[str, Any]:
        """The keys the user gave, nulls left out (a null means: the default)."""
        return {key: value for key, value in self.model_dump().items() if value is not None}


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("float_type", "must be a number, got {value}", {"value": repr(value)[:40]})
    return value


# A JSON number kept as sent: 2 stays 2 (step_size), and a value beyond a float's range reaches the
# parser, which says so, instead of becoming inf here.
Number = Annotated[int | float, PlainValidator(_number, json_schema_input_type=float)]


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "must be true or false, got {value}", {"value": repr(value)[:40]})
    return value


Flag = Annotated[bool, PlainValidator(_flag, json_schema_input_type=bool)]
