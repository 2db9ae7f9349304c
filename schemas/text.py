"""Text from outside: no character that would break a log line, a terminal or a downstream store.

PostgreSQL refuses NUL in text and JSONB, so a NUL accepted here fails later in an activity that
retries for ever; a lone surrogate cannot even be encoded as UTF-8. Refuse both at the edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

# C0 (but tab and line feed), DEL and C1 controls, and lone surrogates (JSON "\ud800" escapes).
_MULTI_LINE_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# One line: also no tab, line feed or Unicode line/paragraph separator.
_SINGLE_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_LINE_BREAKS = "\n\r\x0b\x0c\x85\u2028\u2029"


def _refuse(char: str, *, one_line: bool) -> PydanticCustomError:
    code = f"U+{ord(char):04X}"
    if one_line and char in _LINE_BREAKS:
        kind = "a line break"
    elif "\ud800" <= char <= "\udfff":
        kind = "a lone surrogate"
    else:
        kind = "a control character"
    return PydanticCustomError(
        "text_character", "contains {kind} ({code})", {"kind": kind, "code": code}
    )


def no_control_characters(value: str) -> str:
    """Multi-line free text: line feeds and tabs are fine, other control characters are not."""
    bad = _MULTI_LINE_BAD.search(value)
    if bad:
        raise _refuse(bad.group(), one_line=False)
    return value


def single_line(value: str) -> str:
    """A name, title or identifier: no control character and no line break of any kind."""
    bad = _SINGLE_LINE_BAD.search(value)
    if bad:
        raise _refuse(bad.group(), one_line=True)
    return value


@dataclass(frozen=True)
class _DocumentedPattern:
    """The same rule in the JSON schema, so clients (and fuzzers) know it; a field's own
    stricter pattern, such as an id's, is kept."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.setdefault("pattern", self.pattern)
        return schema


# Summaries, comments, reasons, justifications.
Text = Annotated[
    str,
    AfterValidator(no_control_characters),
    _DocumentedPattern(r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"),
]
# Everything else that is a string: names, titles, numbers and ids of external systems.
Line = Annotated[
    str,
    AfterValidator(single_line),
    _DocumentedPattern(r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"),
]
