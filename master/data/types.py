"""Field types of resource entities: parsing query strings, checking JSON input, encoding, OpenAPI."""

from __future__ import annotations

import re
from typing import Any

import orjson

_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""Integers are stored as signed 64-bit on both backends: anything outside is refused where it comes in."""


def check_int64(number: int) -> int:
    """*number* if it fits a signed 64-bit integer, else ValueError (SQLite and PostgreSQL hold no more)."""
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{number} is out of range (a 64-bit integer, at most {INT64_MAX})")
    return number


def check_text(text: str) -> str:
    """*text* if it holds no NUL character, else ValueError (PostgreSQL cannot store one in text)."""
    if "\x00" in text:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return text


def check_free_value(value: Any) -> None:
    """ValueError if decoded JSON *value* holds, at any depth, a string with a NUL character.

    For values of no declared type (free-form action parameters), which may end up in text
    columns or in commands; values stored as JSON text may hold anything JSON does.
    """
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict):
        for item in value.values():
            check_free_value(item)
    elif isinstance(value, list):
        for item in value:
            check_free_value(item)


class FieldType:
    """A value type.  Subclasses parse URL strings, check JSON values and describe themselves."""

    openapi_type: dict[str, Any] = {}
    sql_comparable = True

    def from_string(self, text: str) -> Any:
        """Parse a query-string value; raise ValueError with a short reason."""
        return text

    def from_json(self, value: Any) -> Any:
        """Check a decoded JSON value (action parameters); return it normalised or raise ValueError."""
        return value

    def from_db(self, value: Any) -> Any:
        """Turn what the database returned into the API value."""
        return value

    @property
    def converts(self) -> bool:
        """Whether :meth:`from_db` changes values (the read path skips the types that do not)."""
        return type(self).from_db is not FieldType.from_db

    def openapi(self) -> dict[str, Any]:
        """The type as an OpenAPI schema object."""
        return dict(self.openapi_type)

    def __repr__(self) -> str:
        return type(self).__name__


class Integer(FieldType):
    """A whole number (64 bits)."""

    openapi_type = {"type": "integer", "format": "int64", "minimum": INT64_MIN, "maximum": INT64_MAX}

    def from_string(self, text: str) -> int:
        """Parse a decimal integer that fits 64 bits."""
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        return check_int64(number)

    def from_json(self, value: Any) -> int:
        """Accept an integer, or a string holding one (HTML forms send strings)."""
        if isinstance(value, bool):
            raise ValueError("expected an integer, got a boolean")
        if isinstance(value, int):
            return check_int64(value)
        if isinstance(value, str):
            return self.from_string(value.strip())
        raise ValueError(f"expected an integer, got {type(value).__name__}")


class DateTime(Integer):
    """A time as integer seconds since the epoch (UTC)."""

    openapi_type = {**Integer.openapi_type, "format": "unix-time"}


class String(FieldType):
    """Text (without NUL characters, which PostgreSQL cannot store)."""

    openapi_type = {"type": "string"}

    def from_string(self, text: str) -> str:
        """Accept text without NUL characters."""
        return check_text(text)

    def from_json(self, value: Any) -> str:
        """Accept a string without NUL characters."""
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return check_text(value)


class NonBlank(String):
    """Text with something besides white space."""

    openapi_type = {"type": "string", "pattern": r"^[^\u0000]*[^\s\u0000][^\u0000]*$"}

    def from_json(self, value: Any) -> str:
        """Accept a string that is not empty once stripped."""
        text = super().from_json(value)
        if not text.strip():
            raise ValueError("must not be empty")
        return text


class Identifier(String):
    """A short name: letters, digits, '_', '-' and '.', not starting with a digit or '.'."""

    pattern = re.compile(r"^[a-zA-Z_-][a-zA-Z0-9._-]*$")
    openapi_type = {"type": "string", "pattern": pattern.pattern}

    def from_string(self, text: str) -> str:
        """Accept an identifier."""
        if not self.pattern.match(text):
            raise ValueError(f"not an identifier: {text!r}")
        return text

    def from_json(self, value: Any) -> str:
        """Accept an identifier string."""
        return self.from_string(super().from_json(value))


class Boolean(FieldType):
    """True or false; query strings accept on/off, true/false, yes/no and 1/0."""

    openapi_type = {"type": "boolean"}

    def from_string(self, text: str) -> bool:
        """Parse on/off, true/false, yes/no or 1/0, in any case."""
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected a boolean (true/false, yes/no, on/off, 1/0), got {text!r}")

    def from_json(self, value: Any) -> bool:
        """Accept a JSON boolean, or a string as in a query."""
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self.from_string(value)
        raise ValueError(f"expected a boolean, got {type(value).__name__}")

    def from_db(self, value: Any) -> bool | None:
        """SQLite hands booleans back as 0/1."""
        return None if value is None else bool(value)


class JsonObject(FieldType):
    """A JSON object, stored as JSON text."""

    openapi_type = {"type": "object"}
    sql_comparable = False

    def from_json(self, value: Any) -> dict[str, Any]:
        """Accept an object."""
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return value

    def from_db(self, value: Any) -> Any:
        """Decode stored JSON text."""
        return orjson.loads(value) if isinstance(value, str | bytes) else value


class List(FieldType):
    """A list of values of one type."""

    sql_comparable = False

    def __init__(self, of: FieldType) -> None:
        self.of = of

    def from_json(self, value: Any) -> list[Any]:
        """Accept a list whose items all have the element type."""
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        return [self.of.from_json(item) for item in value]

    def from_db(self, value: Any) -> Any:
        """Decode stored JSON text; lists assembled by loaders pass through."""
        return orjson.loads(value) if isinstance(value, str | bytes) else value

    def openapi(self) -> dict[str, Any]:
        """An array schema."""
        return {"type": "array", "items": self.of.openapi()}

    def __repr__(self) -> str:
        return f"List({self.of!r})"


class NoneOk(FieldType):
    """A value of another type, or null."""

    def __init__(self, of: FieldType) -> None:
        self.of = of
        self.sql_comparable = of.sql_comparable

    def from_string(self, text: str) -> Any:
        """Parse as the inner type."""
        return self.of.from_string(text)

    def from_json(self, value: Any) -> Any:
        """Accept null or the inner type."""
        return None if value is None else self.of.from_json(value)

    def from_db(self, value: Any) -> Any:
        """None stays None."""
        return None if value is None else self.of.from_db(value)

    @property
    def converts(self) -> bool:
        """Whether the wrapped type converts."""
        return self.of.converts

    def openapi(self) -> dict[str, Any]:
        """The inner schema, nullable."""
        return {**self.of.openapi(), "nullable": True}

    def __repr__(self) -> str:
        return f"NoneOk({self.of!r})"


class Any_(FieldType):
    """Any JSON value."""

    sql_comparable = False
    openapi_type = {}
