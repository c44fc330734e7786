"""Reading labeled text files: CSV, TSV and JSON Lines in, checked records out, or a message naming a row."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from learning.errors import InvalidInput
from learning.text_files import MAX_TEXT_CHARS, read_text_file, text_format

MIB = 1024 * 1024


def read(content: str | bytes, name: str = "intents.csv", **limits):
    data = content.encode() if isinstance(content, str) else content
    return read_text_file(io.BytesIO(data), name=name, max_bytes=limits.pop("max_bytes", MIB), **limits)


def test_a_csv_with_a_header_in_any_order_gives_records_by_label_in_file_order():
    records = read(
        "Label,Extra,TEXT,group\n"
        'greet,x,"hello, there",chat\n'
        "bye,y,see you,chat\n"
        "greet,z,hi,chat\n"
        "\n"
        "balance,w,how much money do I have,bank\n"
    )

    assert records.class_names == ("balance", "bye", "greet")
    assert records.class_groups == ("bank", "chat", "chat")
    assert records.texts == ("how much money do I have", "see you", "hello, there", "hi")
    assert records.labels.tolist() == [0, 1, 2, 2] and records.labels.dtype == np.int64


def test_jsonl_and_tsv_read_alike_and_a_byte_order_mark_is_allowed():
    lines = [{"text": "hello", "label": "greet"}, {"text": "bye now", "label": 7, "group": None}]
    jsonl = read("\ufeff" + "\n".join(json.dumps(x) for x in lines) + "\n\n", name="intents.jsonl")
    tsv = read("text\tlabel\nhello\tgreet\nbye now\t7\n", name="intents.tsv")

    for records in (jsonl, tsv):
        assert records.class_names == ("7", "greet") and records.texts == ("bye now", "hello")
        assert records.class_groups == ("", "")


def test_the_format_comes_from_the_name_else_from_the_first_character():
    assert text_format("a.JSONL", b"text,label") == "jsonl"
    assert text_format("a.ndjson", b"") == "jsonl"
    assert text_format("upload", b'\n  {"text": 1}') == "jsonl"
    assert text_format("upload", b"text,label") == "csv"


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("", "a.csv", "a.csv is empty"),
        ("words,label\nhi,greet\n", "a.csv", "a.csv has no 'text' column"),
        ("text,label\nhi,greet\nhello,greet\n", "a.csv", "only one label (greet)"),
        ("text,label\n", "a.csv", "holds no examples"),
        ("text,label\nhi,greet\n   ,bye\n", "a.csv", "a.csv row 3: the text is empty"),
        ("text,label\nhi,greet\nbye,\n", "a.csv", "a.csv row 3: the label is empty"),
        ("text,label,group\nhi,greet,a\nhey,greet,b\n", "a.csv", "row 3: label 'greet' is in group 'b'"),
        ('{"text": "hi", "label": "a"}\n[1]\n', "a.jsonl", "a.jsonl line 2 must be an object"),
        ('{"text": "hi", "label": "a"}\n{"text": 5, "label": "b"}\n', "a.jsonl", '"text" must be a string'),
        ('{"text": "hi", "label": true}\n', "a.jsonl", '"label" must be a string or an integer'),
        ('{"text": "hi", "label": "a"}\n{oops\n', "a.jsonl", "a.jsonl line 2 is not JSON"),
        (f"text,label\n{'x' * (MAX_TEXT_CHARS + 1)},a\n", "a.csv", "row 2: the text is longer than"),
        ('text,label\n"unclosed,a\n', "a.csv", "a.csv is not valid CSV near row 2"),
    ],
)
def test_each_bad_file_is_refused_naming_the_problem(content, name, message):
    with pytest.raises(InvalidInput) as err:
        read(content, name=name)
    assert message in err.value.message and err.value.field == "source"


def test_size_rows_and_encoding_are_checked_before_anything_is_kept():
    with pytest.raises(InvalidInput, match="larger than 1 MiB"):
        read("text,label\n" + "hello,a\n" * 200_000)
    with pytest.raises(InvalidInput, match="more than 3 rows"):
        read("text,label\na,x\nb,y\nc,x\nd,y\n", max_rows=3)
    with pytest.raises(InvalidInput, match="not UTF-8 text: byte 0xe9 at offset 14"):
        read("text,label\ncaf\xe9,a\nb,c\n".encode("latin-1"))
