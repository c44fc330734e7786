"""Schemathesis hooks for ``test_schema_fuzz``, loaded by ``st run`` through ``SCHEMATHESIS_HOOKS``.

``FUZZ_REAL_IDS`` holds a JSON object: path template -> the user's real ids (or slugs) there;
``FUZZ_REFERENCES``: body field -> real values for it (``domain`` -> slugs, ``model`` -> ids).
Half the generated path parameters, and half the bodies that name one of those fields, get
real values instead, so requests reach past "not found" to a real row.
"""

from __future__ import annotations

import json
import os

import hypothesis.strategies as st
import schemathesis

REAL_IDS: dict[str, list] = json.loads(os.environ.get("FUZZ_REAL_IDS", "{}"))
REFERENCES: dict[str, list] = json.loads(os.environ.get("FUZZ_REFERENCES", "{}"))


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    real = REAL_IDS.get(context.operation.path)
    if not real or len(path_parameters) != 1:
        return st.just(path_parameters)
    (name,) = path_parameters
    return st.one_of(st.just(path_parameters), st.sampled_from([{name: value} for value in real]))


@schemathesis.hook
def flatmap_body(context, body):
    fields = [name for name in body if name in REFERENCES] if isinstance(body, dict) else []
    if not fields:
        return st.just(body)
    real = st.fixed_dictionaries({name: st.sampled_from(REFERENCES[name]) for name in fields})
    return st.one_of(st.just(body), real.map(lambda values: {**body, **values}))
