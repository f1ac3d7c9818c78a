"""OCSF 1.5.0's own JSON schema for each class and its profiles, built offline by ocsf-json-schema from the official
schema export it bundles, and the rules of OCSF that a JSON schema cannot state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

VERSION = "1.5.0"
EPOCH, MILLISECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(milliseconds=1)
# The classes cyberevents writes: class_uid → (name, category_uid), from OCSF's own list of classes.
CLASSES = {
    3002: ("authentication", 3),
    4001: ("network_activity", 4),
    2002: ("vulnerability_finding", 2),
    2004: ("detection_finding", 2),
}


@cache
def _schemas() -> OcsfJsonSchemaEmbedded:
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(version=VERSION))


@cache
def _validator(class_name: str, profiles: tuple[str, ...]) -> jsonschema.protocols.Validator:
    schema = _schemas().get_class_schema(class_name, profiles=list(profiles))
    validator: type[jsonschema.protocols.Validator] = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def without_nulls(value: Any) -> Any:
    """OCSF leaves out what is unknown; the schema refuses a null where it expects a value."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value if item is not None]
    return value


def ocsf_errors(record: dict[str, Any]) -> list[str]:
    """Every way `record` breaks OCSF 1.5.0, for its class and the profiles its metadata lists; empty if none."""
    record = without_nulls(record)
    class_uid = record.get("class_uid")
    if class_uid not in CLASSES:
        return [f"class_uid {class_uid!r} is not a class cyberevents writes"]
    name, category_uid = CLASSES[class_uid]
    profiles = tuple(record.get("metadata", {}).get("profiles", ()))
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or 'event'}: {error.message}"
        for error in _validator(name, profiles).iter_errors(record)
    ]
    if errors:
        return errors
    # What the schema cannot say: type_uid is class_uid × 100 + activity_id; the version is the one written to.
    if record["type_uid"] != class_uid * 100 + record["activity_id"]:
        errors.append(f"type_uid {record['type_uid']} is not class_uid × 100 + activity_id")
    if record["category_uid"] != category_uid:
        errors.append(f"category_uid {record['category_uid']} is not {name}'s ({category_uid})")
    if record["metadata"]["version"] != VERSION:
        errors.append(f"metadata.version {record['metadata']['version']!r} is not {VERSION}")
    if "time_dt" in record and record["time"] != (datetime.fromisoformat(record["time_dt"]) - EPOCH) // MILLISECOND:
        errors.append(f"time {record['time']} is not time_dt ({record['time_dt']}) in epoch milliseconds")
    return errors
