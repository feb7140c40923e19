"""docs/schema.md documents exactly the measurements, tags and fields of collector/schema.py."""

import re
from pathlib import Path

from wattwise.collector.schema import MEASUREMENTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def documented() -> dict[str, tuple[set[str], dict[str, tuple[str, str]]]]:
    sections = re.split(r"^## `([a-z_]+)`$", DOC.read_text(), flags=re.M)[1:]
    out = {}
    for name, body in zip(sections[::2], sections[1::2], strict=True):
        tags = set(re.findall(r"^\| `([a-z_]+)` \| [^|]+ \|$", body, flags=re.M))
        fields = {
            m[0]: (m[1], m[2])
            for m in re.findall(r"^\| `([a-z_0-9]+)` \| (int|float|str) \| ([^|]+) \|", body, re.M)
        }
        out[name] = (tags, fields)
    return out


def test_every_measurement_tag_and_field_is_documented_with_its_type_and_unit() -> None:
    docs = documented()
    assert set(docs) == set(MEASUREMENTS)
    for name, spec in MEASUREMENTS.items():
        tags, fields = docs[name]
        assert tags == set(spec.tags), name
        assert set(fields) == set(spec.fields), name
        for field, field_spec in spec.fields.items():
            assert fields[field] == (field_spec.kind.__name__, field_spec.unit.strip()), field
