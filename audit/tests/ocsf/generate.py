#!/usr/bin/env python3
"""Writes the JSON Schemas (draft 2020-12) of the OCSF 1.5.0 event classes
that `sandbox audit export --format ocsf` emits, into 1.5.0/.

The OCSF server exports a JSON Schema per class (schema.ocsf.io/export/...);
it could not be reached from where these were made, so they are written here
from the ocsf-schema repository's definitions (see SOURCE.md): every class's
required attributes and enums, the `at_least_one` constraints of the classes
and objects, and the attributes of the `host` and `security_control`
profiles. Each object lists the attributes it has in 1.5.0 that sandbox may
emit, and refuses any other (`additionalProperties: false`), so a misspelt
or invented attribute fails validation as a missing required one does.

Run it from this directory: python3 generate.py
"""

import json
import os

VERSION = "1.5.0"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), VERSION)

S = {"type": "string"}
INT = {"type": "integer"}
TIMESTAMP = {"type": "integer", "minimum": 0}  # timestamp_t: ms since the epoch
ARRAY_OF_STRINGS = {"type": "array", "items": S}


def enum(*ids):
    return {"type": "integer", "enum": list(ids)}


def obj(properties, required=(), at_least_one=()):
    o = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        o["required"] = list(required)
    if at_least_one:
        o["anyOf"] = [{"required": [a]} for a in at_least_one]
    return o


def ref(name):
    return {"$ref": f"#/$defs/{name}"}


# ------------------------------------------------------------------ objects
# objects/*.json; enums from the dictionary and the objects.
OBJECTS = {
    "product": obj(
        {"name": S, "uid": S, "vendor_name": S, "version": S, "lang": S, "path": S, "url_string": S, "cpe_name": S},
    ),
    "metadata": obj(
        {
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$"},
            "product": ref("product"),
            "profiles": ARRAY_OF_STRINGS,
            "uid": S,
            "sequence": INT,
            "event_code": S,
            "correlation_uid": S,
            "original_time": S,
            "log_provider": S,
            "log_name": S,
            "logged_time": TIMESTAMP,
            "labels": ARRAY_OF_STRINGS,
        },
        required=["product", "version"],
    ),
    # user extends _entity: at least one of account, name, uid.
    "user": obj(
        {"name": S, "uid": S, "type_id": enum(0, 1, 2, 3, 4, 99), "type": S, "domain": S, "email_addr": S},
        at_least_one=["account", "name", "uid"],
    ),
    "actor": obj(
        {"user": ref("user"), "process": ref("process"), "app_name": S, "app_uid": S},
        at_least_one=["process", "user", "invoked_by", "session", "app_name", "app_uid"],
    ),
    # device extends _endpoint; type_id required.
    "device": obj(
        {
            "hostname": S,
            "name": S,
            "uid": S,
            "ip": S,
            "domain": S,
            "type_id": enum(*range(0, 16), 99),
            "type": S,
        },
        required=["type_id"],
        at_least_one=["ip", "uid", "name", "hostname", "instance_uid", "interface_uid", "interface_name"],
    ),
    "network_endpoint": obj(
        {"hostname": S, "ip": S, "port": {"type": "integer", "minimum": 0, "maximum": 65535}, "name": S, "uid": S,
         "svc_name": S},
        at_least_one=["ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name"],
    ),
    "fingerprint": obj(
        {"algorithm_id": enum(0, 1, 2, 3, 4, 5, 6, 7, 99), "algorithm": S, "value": S},
        required=["algorithm_id", "value"],
    ),
    "file": obj(
        {
            "name": S,
            "path": S,
            "type_id": enum(0, 1, 2, 3, 4, 5, 6, 7, 99),
            "type": S,
            "size": INT,
            "hashes": {"type": "array", "items": ref("fingerprint")},
            "uid": S,
            "ext": S,
            "parent_folder": S,
        },
        required=["name", "type_id"],
    ),
    "url": obj(
        {"url_string": S, "scheme": S, "hostname": S, "port": {"type": "integer", "minimum": 0, "maximum": 65535},
         "path": S, "query_string": S, "domain": S, "subdomain": S},
    ),
    "http_request": obj(
        {"url": ref("url"), "http_method": S, "version": S, "user_agent": S, "uid": S, "length": INT},
    ),
    "http_response": obj({"code": INT, "status": S, "message": S, "length": INT}, required=["code"]),
    # process extends _entity: at least one of pid, uid, cpid.
    "process": obj(
        {
            "name": S,
            "uid": S,
            "pid": INT,
            "cpid": S,
            "cmd_line": S,
            "path": S,
            "file": ref("file"),
            "working_directory": S,
            "created_time": TIMESTAMP,
        },
        at_least_one=["pid", "uid", "cpid"],
    ),
    "service": obj({"name": S, "uid": S, "version": S}),
    "request": obj({"uid": S, "flags": ARRAY_OF_STRINGS}, required=["uid"]),
    "api": obj(
        {"operation": S, "service": ref("service"), "request": ref("request"), "version": S},
        required=["operation"],
    ),
    # resource_details extends _resource: at least one of name, uid.
    "resource_details": obj(
        {"name": S, "uid": S, "type": S, "version": S, "criticality": S},
        at_least_one=["name", "uid"],
    ),
    "policy": obj({"name": S, "uid": S, "desc": S, "version": S, "is_applied": {"type": "boolean"}},
                  at_least_one=["name", "uid"]),
    "analytic": obj({"name": S, "uid": S, "type_id": enum(0, 1, 2, 3, 4, 99), "type": S, "desc": S},
                    required=["type_id"]),
    "finding_info": obj(
        {
            "uid": S,
            "title": S,
            "desc": S,
            "analytic": ref("analytic"),
            "types": ARRAY_OF_STRINGS,
            "created_time": TIMESTAMP,
            "data_sources": ARRAY_OF_STRINGS,
        },
        required=["uid"],
    ),
}

# ------------------------------------------------------------------ classes
# events/base_event.json (+ the classification and occurrence traits): the
# attributes every class has; the host and security_control profiles.
SEVERITY = enum(0, 1, 2, 3, 4, 5, 6, 99)
STATUS = enum(0, 1, 2, 99)
BASE = {
    "class_name": S,
    "category_name": S,
    "activity_name": S,
    "type_name": S,
    "time": TIMESTAMP,
    "timezone_offset": {"type": "integer", "minimum": -1080, "maximum": 1080},
    "severity_id": SEVERITY,
    "severity": S,
    "status_id": STATUS,
    "status": S,
    "status_code": S,
    "status_detail": S,
    "message": S,
    "metadata": ref("metadata"),
    "raw_data": S,
    "unmapped": {"type": "object"},
    "count": INT,
    "start_time": TIMESTAMP,
    "end_time": TIMESTAMP,
    "duration": INT,
    # profile host
    "actor": ref("actor"),
    "device": ref("device"),
    # profile security_control (dictionary enums of 1.5.0)
    "disposition_id": enum(*range(0, 28), 99),
    "disposition": S,
    "action_id": enum(0, 1, 2, 3, 4, 99),
    "action": S,
    "policy": ref("policy"),
    "is_alert": {"type": "boolean"},
}
BASE_REQUIRED = ["activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"]

CLASSES = {
    # events/system/file_activity.json, extends system (actor, device required)
    "file_activity": {
        "uid": 1001,
        "category_uid": 1,
        "activities": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
        "properties": {"file": ref("file"), "file_result": ref("file"), "component": S, "connection_uid": S},
        "required": ["actor", "device", "file"],
    },
    # events/system/process_activity.json, extends system
    "process_activity": {
        "uid": 1007,
        "category_uid": 1,
        "activities": [1, 2, 3, 4, 5],
        "properties": {"process": ref("process"), "exit_code": INT, "launch_type_id": INT},
        "required": ["actor", "device", "process"],
    },
    # events/findings/detection_finding.json, extends finding
    "detection_finding": {
        "uid": 2004,
        "category_uid": 2,
        "activities": [1, 2, 3],
        "status": enum(0, 1, 2, 3, 4, 5, 6, 99),
        "properties": {
            "finding_info": ref("finding_info"),
            "resources": {"type": "array", "items": ref("resource_details")},
            "confidence_id": enum(0, 1, 2, 3, 99),
        },
        "required": ["finding_info"],
    },
    # events/network/http_activity.json, extends network
    "http_activity": {
        "uid": 4002,
        "category_uid": 4,
        "activities": [1, 2, 3, 4, 5, 6, 7, 8],
        "properties": {
            "http_request": ref("http_request"),
            "http_response": ref("http_response"),
            "http_status": INT,
            "src_endpoint": ref("network_endpoint"),
            "dst_endpoint": ref("network_endpoint"),
            "app_name": S,
        },
        "required": [],
        # network: dst_endpoint or src_endpoint; http_activity: request or response
        "all_of": [["dst_endpoint", "src_endpoint"], ["http_request", "http_response"]],
    },
    # events/application/api_activity.json, extends application
    "api_activity": {
        "uid": 6003,
        "category_uid": 6,
        "activities": [1, 2, 3, 4],
        "properties": {
            "api": ref("api"),
            "src_endpoint": ref("network_endpoint"),
            "dst_endpoint": ref("network_endpoint"),
            "resources": {"type": "array", "items": ref("resource_details")},
            "http_request": ref("http_request"),
            "http_response": ref("http_response"),
        },
        "required": ["actor", "api", "src_endpoint"],
    },
}


def class_schema(name, c):
    activities = [0] + c["activities"] + [99]
    props = dict(BASE)
    props["class_uid"] = {"const": c["uid"]}
    props["category_uid"] = {"const": c["category_uid"]}
    props["activity_id"] = enum(*activities)
    props["type_uid"] = enum(*[c["uid"] * 100 + a for a in activities])
    if "status" in c:
        props["status_id"] = c["status"]
    props.update(c["properties"])
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://schema.ocsf.io/schema/{VERSION}/classes/{name}?profiles=host,security_control",
        "title": f"OCSF {VERSION} {name} ({c['uid']}), profiles host and security_control",
        "type": "object",
        "properties": props,
        "required": BASE_REQUIRED + c["required"],
        "additionalProperties": False,
        "$defs": OBJECTS,
    }
    groups = c.get("all_of", [])
    if groups:
        schema["allOf"] = [{"anyOf": [{"required": [a]} for a in g]} for g in groups]
    return schema


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, c in CLASSES.items():
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(class_schema(name, c), f, indent=2, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
