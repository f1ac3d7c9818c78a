"""The `application/health+json` body as draft-inadarei-api-health-check-06 defines it, as a JSON Schema written from
the draft's text (sections 3 and 4): what every /livez and /readyz body is validated against."""

from __future__ import annotations

from typing import Any

import jsonschema

STATUS = {"enum": ["pass", "fail", "warn"]}  # the draft's values; it tolerates "ok", "up", "error", "down" too
# "output: raw error output, in case of fail or warn states. This field SHOULD be omitted for pass state."
NO_OUTPUT_WHEN_PASSING = {
    "if": {"properties": {"status": {"const": "pass"}}},
    "then": {"not": {"required": ["output"]}},
}
HEALTH_JSON: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["status"],
    "additionalProperties": False,
    "properties": {
        "status": STATUS,
        "version": {"type": "string"},
        "releaseId": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "output": {"type": "string"},
        "serviceId": {"type": "string"},
        "description": {"type": "string"},
        # "checks: … The key identifying an element in the object SHOULD be a unique string within the details
        # section. It MAY have two parts: "{componentName}:{measurementName}". … The value … is an array of objects"
        "checks": {
            "type": "object",
            "propertyNames": {"pattern": "^[^:]+(:[^:]+)?$"},
            "additionalProperties": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/check"}},
        },
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "allOf": [NO_OUTPUT_WHEN_PASSING],
    "$defs": {
        "check": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {
                "componentId": {"type": "string"},
                # "componentType: SHOULD be present if componentName is present … pre-defined values include:
                # component, datastore, system"
                "componentType": {"type": "string"},
                "observedValue": {},
                "observedUnit": {"type": "string"},
                "status": STATUS,
                "affectedEndpoints": {"type": "array", "items": {"type": "string"}},
                "time": {"type": "string", "format": "date-time"},
                "output": {"type": "string"},
                "links": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "allOf": [NO_OUTPUT_WHEN_PASSING],
        }
    },
}
VALIDATOR = jsonschema.Draft202012Validator(HEALTH_JSON, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def health_json_errors(body: Any) -> list[str]:
    """Every way `body` departs from the draft, and from what the draft's text says of a body's status: it is the
    worst of its checks'."""
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or 'body'}: {error.message}" for error in VALIDATOR.iter_errors(body)
    ]
    if not errors:
        statuses = {entry["status"] for entries in body.get("checks", {}).values() for entry in entries}
        worst = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
        if body["status"] != worst:
            errors.append(f"status {body['status']!r}, but the worst check is {worst!r}")
    return errors
