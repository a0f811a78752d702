"""The one rule for model names: catalog ids, family aliases, custom names, store folders.

A model name becomes a folder name (`onnx-models/<name>/`), a lock file name and a key in
`custom-models.json`, so `add`, `download`, `remove`, `run`/`serve` (through core/models/resolve.py)
and the store all check names here, with the same answer: a name `add` accepts can always be
downloaded, run and removed. The check is a full match (`re.fullmatch`), so a trailing newline
is refused too (`re.match` with `$` would accept `"name\\n"`).
"""

from __future__ import annotations

import re

from agentic_onnx.core.errors import InvalidModelNameError

MAX_NAME_LENGTH = 80
# Lower-case letters, digits, '.', '_' and '-', starting with a letter or digit; no '..'.
MODEL_NAME_PATTERN = rf"[a-z0-9][a-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
NAME_RULE = (f"Model names use lower-case letters, digits, '.', '_' and '-', start with a letter "
             f"or digit, have at most {MAX_NAME_LENGTH} characters and no '..'.")


def is_model_name(value: object) -> bool:
    """True when `value` may name a model (and so a folder inside the store)."""
    return (isinstance(value, str) and _MODEL_NAME.fullmatch(value) is not None
            and ".." not in value)


def check_model_name(value: str) -> str:
    """`value` unchanged, or an InvalidModelNameError (exit 2) that states the rule."""
    if not is_model_name(value):
        raise InvalidModelNameError(f"Invalid model name {value!r}.", NAME_RULE)
    return value
