"""Strict mode for the local AWS: refuse what real AWS refuses.

Two layers, both generic (nothing here knows deploy-action):

1. **Model validation**: every request to a service in `MODELS` is checked against botocore's
   service model before moto sees it: required members, enums, string length and pattern, list
   and map length, number ranges. A failure answers 400 with the service's own validation error
   code and the message shape AWS uses ("1 validation error detected: Value 'x' at 'family'
   failed to satisfy constraint: ...").
2. **Semantic rules** (`RULES`): a small table of things AWS refuses that no model states and
   moto does not check (INACTIVE task definitions, tag limits, ALB rule limits, RDS states).
   Each rule names the AWS documentation it copies (quoted in emulator/README.md).

`local_aws.py` calls `refusal()` for each AWS request (under its lock) and `install()` once.
`ENABLED` is on by default; `local_aws.py --no-strict` turns it off for a one-off comparison.
"""
from __future__ import annotations

import json
import re
import sys
import traceback
import unicodedata
import urllib.parse
from typing import Any, Callable

ENABLED = True
STATS = {"refused": 0, "validation": 0, "semantic": 0, "internalErrors": 0, "skippedPatterns": []}

# call-log service name -> botocore model name
MODELS = {"ecs": "ecs", "rds": "rds", "elbv2": "elbv2", "cloudwatch": "cloudwatch", "logs": "logs",
          "ssm": "ssm", "ecr": "ecr", "application-autoscaling": "application-autoscaling"}
# the code each service answers a model (front-end) validation failure with
VALIDATION_CODE = {"ecs": "InvalidParameterException", "logs": "InvalidParameterException",
                   "ecr": "InvalidParameterException", "ssm": "ValidationException",
                   "application-autoscaling": "ValidationException", "rds": "ValidationError",
                   "elbv2": "ValidationError", "cloudwatch": "ValidationError"}
TARGET_PREFIXES = {"AmazonEC2ContainerRegistry_V20150921": "ecr", "AnyScaleFrontendService": "application-autoscaling"}


class Refusal(Exception):
    """An AWS-shaped refusal: HTTP status, error code (query code for awsQueryCompatible) and message."""

    def __init__(self, code: str, message: str, status: int = 400, query_code: str | None = None):
        super().__init__(message)
        self.code, self.message, self.status, self.query_code = code, message, status, query_code


# =============================================================================
# Java regular expressions (AWS models) -> Python
# =============================================================================
_CATEGORY_RANGES: dict[str, str] = {}


def _category_class(cat: str) -> str:
    """Character-class body for a Unicode general category (\\p{L}, \\p{Zs}, ...), all planes."""
    if not _CATEGORY_RANGES:
        spans: dict[str, list[list[int]]] = {}
        for cp in range(0x110000):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            c = unicodedata.category(chr(cp))
            for key in (c, c[0]):
                lst = spans.setdefault(key, [])
                if lst and lst[-1][1] == cp - 1:
                    lst[-1][1] = cp
                else:
                    lst.append([cp, cp])
        for key, lst in spans.items():
            _CATEGORY_RANGES[key] = "".join(
                f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in lst)
    if cat == "Print":  # Java's POSIX class is ASCII-only unless UNICODE_CHARACTER_CLASS
        return "\\x20-\\x7e"
    return _CATEGORY_RANGES.get(cat, "")


def java_regex(pattern: str) -> re.Pattern | None:
    """Translate the Java regex dialect of AWS models; None when it cannot be translated."""
    p = pattern.replace("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF")
    out, i, in_class, last_was_class_escape = [], 0, False, False
    while i < len(p):
        ch = p[i]
        if ch == "\\" and i + 1 < len(p):
            nxt = p[i + 1]
            m = re.match(r"\\([pP])\{(\w+)\}", p[i:])
            if m:
                if m.group(1) == "P":
                    return None
                body = _category_class(m.group(2))
                if not body:
                    return None
                out.append(body if in_class else f"[{body}]")
                i += len(m.group(0))
                last_was_class_escape = True
                continue
            out.append(p[i:i + 2])
            i += 2
            last_was_class_escape = nxt in "wdsWDS"
            continue
        if in_class and ch == "-" and last_was_class_escape:
            out.append("\\-")
        elif ch == "[" and not in_class:
            in_class = True
            out.append(ch)
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        else:
            out.append(ch)
        last_was_class_escape = False
        i += 1
    try:
        return re.compile("".join(out), re.ASCII)
    except re.error:
        return None


_REGEX_CACHE: dict[str, re.Pattern | None] = {}


def pattern_for(pattern: str) -> re.Pattern | None:
    if pattern not in _REGEX_CACHE:
        rx = java_regex(pattern)
        _REGEX_CACHE[pattern] = rx
        if rx is None:
            STATS["skippedPatterns"].append(pattern)
    return _REGEX_CACHE[pattern]


# =============================================================================
# Model validation
# =============================================================================
_models: dict[str, Any] = {}


def model(name: str):
    if name not in _models:
        import botocore.session
        _models[name] = botocore.session.get_session().get_service_model(name)
    return _models[name]


def _show(value: Any) -> str:
    if isinstance(value, (list, dict)) and len(str(value)) > 120:
        return f"[{len(value)} items]" if isinstance(value, list) else f"{{{len(value)} entries}}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


class Validator:
    """Checks one request's parameters against a botocore input shape (coral-style messages)."""

    def __init__(self, lower_first: bool):
        self.lower_first = lower_first  # query services name members camelCase in messages
        self.errors: list[str] = []

    def name(self, member: str) -> str:
        return member[:1].lower() + member[1:] if self.lower_first else member

    def fail(self, value: Any, path: str, constraint: str) -> None:
        shown = "null" if value is None else f"'{_show(value)}'"
        self.errors.append(f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}")

    def check(self, shape: Any, value: Any, path: str) -> None:
        if value is None:
            return
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            if not isinstance(value, dict):
                return
            for req in shape.required_members:
                if value.get(req) is None:
                    self.fail(None, self.join(path, req), "Member must not be null")
            for key, item in value.items():
                member = shape.members.get(key)
                if member is not None:
                    self.check(member, item, self.join(path, key))
        elif kind == "list":
            if not isinstance(value, list):
                return
            self.length(value, path, meta)
            for i, item in enumerate(value):
                self.check(shape.member, item, f"{path}.{i + 1}.member")
        elif kind == "map":
            if not isinstance(value, dict):
                return
            self.length(value, path, meta)
            for key, item in value.items():
                self.check(shape.key, key, f"{path}.key")
                self.check(shape.value, item, f"{path}.{key}.value")
        elif kind == "string":
            if not isinstance(value, str):
                return
            if shape.enum and value not in shape.enum:
                self.fail(value, path, "Member must satisfy enum value set: [" + ", ".join(shape.enum) + "]")
                return
            self.length(value, path, meta)
            rx = pattern_for(meta["pattern"]) if meta.get("pattern") else None
            if rx is not None and not rx.fullmatch(value):
                self.fail(value, path, f"Member must satisfy regular expression pattern: {meta['pattern']}")
        elif kind in ("integer", "long", "float", "double"):
            try:
                num = float(value)
            except (TypeError, ValueError):
                return
            if "min" in meta and num < meta["min"]:
                self.fail(value, path, f"Member must have value greater than or equal to {meta['min']}")
            if "max" in meta and num > meta["max"]:
                self.fail(value, path, f"Member must have value less than or equal to {meta['max']}")

    def join(self, path: str, member: str) -> str:
        return f"{path}.{self.name(member)}" if path else self.name(member)

    def length(self, value: Any, path: str, meta: dict) -> None:
        if "min" in meta and len(value) < meta["min"]:
            self.fail(value, path, f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            self.fail(value, path, f"Member must have length less than or equal to {meta['max']}")


def validate(service: str, operation: str, params: dict, lower_first: bool) -> None:
    op = model(MODELS[service]).operation_model(operation)
    if op.input_shape is None:
        return
    v = Validator(lower_first)
    v.check(op.input_shape, params, "")
    if v.errors:
        n = len(v.errors)
        shown = v.errors[:10]
        msg = f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(shown)
        code = VALIDATION_CODE[service]
        STATS["validation"] += 1
        if service == "cloudwatch":  # awsQueryCompatible: JSON/CBOR type + query code header
            raise Refusal("ValidationException", msg, query_code="ValidationError")
        raise Refusal(code, msg)


# =============================================================================
# Request parameters (JSON, CBOR, query) as botocore-shaped dicts
# =============================================================================

def _has(keys: list[str], prefix: str) -> bool:
    return any(k == prefix or k.startswith(prefix + ".") for k in keys)


def read_query(shape: Any, form: dict, keys: list[str], prefix: str) -> Any:
    """awsQuery form fields -> the structure botocore would have serialised."""
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for name, member in shape.members.items():
            loc = member.serialization.get("name", name)
            p = f"{prefix}.{loc}" if prefix else loc
            if _has(keys, p):
                out[name] = read_query(member, form, keys, p)
        return out
    if kind == "list":
        if form.get(prefix) == "":
            return []
        base = prefix if shape.serialization.get("flattened") else \
            f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        rx = re.compile(re.escape(base) + r"\.(\d+)(?:\.|$)")
        idx = sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})
        return [read_query(shape.member, form, keys, f"{base}.{i}") for i in idx]
    if kind == "map":
        base = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        rx = re.compile(re.escape(base) + r"\.(\d+)\.")
        kname = shape.key.serialization.get("name", "key")
        vname = shape.value.serialization.get("name", "value")
        out = {}
        for i in sorted({int(m.group(1)) for k in keys if (m := rx.match(k))}):
            out[form.get(f"{base}.{i}.{kname}")] = read_query(shape.value, form, keys, f"{base}.{i}.{vname}")
        return out
    return form.get(prefix)


def request_params(service: str, operation: str, protocol: str, body: bytes, decode_cbor) -> dict | None:
    op = model(MODELS[service]).operation_model(operation)
    if op.input_shape is None:
        return {}
    if protocol == "json":
        doc = json.loads(body or b"{}")
        return doc if isinstance(doc, dict) else None
    if protocol == "cbor":
        doc = decode_cbor(body)
        return doc if isinstance(doc, dict) else None
    form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return read_query(op.input_shape, form, list(form), "")


# =============================================================================
# Semantic rules: what AWS refuses beyond the model (see emulator/README.md, "Strict mode")
# =============================================================================
# (service, operation) -> [rule(params, ctx)]; a rule raises Refusal.
RULES: dict[tuple[str, str], list[Callable[[dict, "Ctx"], None]]] = {}


def rule(service: str, *operations: str):
    def register(fn):
        for op in operations:
            RULES.setdefault((service, op), []).append(fn)
        return fn
    return register


class Ctx:
    def __init__(self, account: str, region: str):
        self.account, self.region = account, region

    def ecs(self):
        from moto.ecs.models import ecs_backends
        return ecs_backends[self.account][self.region]

    def elbv2(self):
        from moto.elbv2.models import elbv2_backends
        return elbv2_backends[self.account][self.region]

    def rds(self):
        from moto.rds.models import rds_backends
        return rds_backends[self.account][self.region]


# ---------------------------------------------------------------- ECS
FAMILY = re.compile(r"[A-Za-z0-9_-]{1,255}")


def ecs_task_definition(backend, ref: str):
    """The task definition a reference names (family -> latest ACTIVE), or None when unknown."""
    name = ref.split("/")[-1]
    family, _, rev = name.partition(":")
    revisions = backend.task_definitions.get(family, {})
    if rev:
        return revisions.get(int(rev)) if rev.isdigit() else None
    active = [r for r, td in revisions.items() if td.status == "ACTIVE"]
    return revisions[max(active)] if active else None


@rule("ecs", "RunTask", "StartTask", "CreateService", "UpdateService")
def ecs_inactive_revision(params: dict, ctx: Ctx) -> None:
    ref = params.get("taskDefinition")
    if not ref:
        return
    name = ref.split("/")[-1]
    family, _, rev = name.partition(":")
    revisions = ctx.ecs().task_definitions.get(family, {})
    if rev and rev.isdigit() and int(rev) in revisions and revisions[int(rev)].status != "ACTIVE":
        raise Refusal("ClientException", "TaskDefinition is inactive")
    if not rev and revisions and not any(td.status == "ACTIVE" for td in revisions.values()):
        raise Refusal("ClientException", f"TaskDefinition not found: family {family} has no ACTIVE revision")


@rule("ecs", "RegisterTaskDefinition")
def ecs_family_pattern(params: dict, ctx: Ctx) -> None:
    family = params.get("family")
    if isinstance(family, str) and not FAMILY.fullmatch(family):
        raise Refusal("ClientException", f"Family '{family}' contains invalid characters: up to 255 letters "
                      "(uppercase and lowercase), numbers, underscores, and hyphens are allowed.")


def ecs_tag_list(tags: list, existing: list | None = None) -> None:
    for tag in tags or []:
        key, value = tag.get("key") or "", tag.get("value") or ""
        if key.lower().startswith("aws:") or value.lower().startswith("aws:"):
            raise Refusal("InvalidParameterException",
                          f"Tag '{key}': the aws: prefix is reserved for AWS use and can't be used in keys or values.")
        if len(key) > 128:
            raise Refusal("InvalidParameterException", f"Tag key '{key[:40]}...' is longer than 128 characters.")
        if len(value) > 256:
            raise Refusal("InvalidParameterException", f"The value of tag '{key}' is longer than 256 characters.")
    keys = {t.get("key") for t in tags or []} | {t.get("key") for t in existing or []
                                                  if not str(t.get("key", "")).lower().startswith("aws:")}
    if len(keys) > 50:
        raise Refusal("InvalidParameterException",
                      f"A resource can have at most 50 tags; this request would give it {len(keys)}.")


@rule("ecs", "RegisterTaskDefinition", "CreateService", "RunTask", "StartTask", "CreateCluster",
      "CreateCapacityProvider", "CreateTaskSet")
def ecs_tags_on_create(params: dict, ctx: Ctx) -> None:
    ecs_tag_list(params.get("tags") or [])


@rule("ecs", "TagResource")
def ecs_tags_on_tag_resource(params: dict, ctx: Ctx) -> None:
    existing = []
    try:
        arn = params.get("resourceArn") or ""
        backend = ctx.ecs()
        existing = backend._get_resource(arn, backend._parse_resource_arn(arn)).tags or []
    except Exception:  # noqa: BLE001 - an unknown resource is moto's answer to give
        pass
    ecs_tag_list(params.get("tags") or [], existing)


@rule("ecs", "UpdateService")
def ecs_deployment_controller(params: dict, ctx: Ctx) -> None:
    backend = ctx.ecs()
    cluster = (params.get("cluster") or "default").split("/")[-1]
    name = (params.get("service") or "").split("/")[-1]
    service = backend.services.get(f"{cluster}:{name}")
    if service is None:
        return
    kind = (service.deployment_controller or {}).get("type", "ECS")
    if kind == "ECS":
        return
    changed = [k for k in ("networkConfiguration", "platformVersion", "loadBalancers") if params.get(k) is not None]
    ref = params.get("taskDefinition")
    if ref:
        td = ecs_task_definition(backend, ref)
        if td is None or td.arn != service.task_definition:
            changed.insert(0, "taskDefinition")
    if changed:
        how = "create a new CodeDeploy deployment" if kind == "CODE_DEPLOY" else "create a new task set"
        raise Refusal("InvalidParameterException",
                      f"Unable to update {', '.join(changed)} on services with a {kind} deployment controller. "
                      f"To change them, {how}.")


# ---------------------------------------------------------------- ELBv2
ONCE_FIELDS = ("host-header", "path-pattern", "http-request-method", "source-ip")
CONFIG_OF = {"host-header": "HostHeaderConfig", "path-pattern": "PathPatternConfig",
             "http-header": "HttpHeaderConfig", "http-request-method": "HttpRequestMethodConfig",
             "query-string": "QueryStringConfig", "source-ip": "SourceIpConfig"}


@rule("elbv2", "CreateRule", "ModifyRule")
def elb_rule_conditions(params: dict, ctx: Ctx) -> None:
    conditions = params.get("Conditions") or []
    seen: dict[str, int] = {}
    total = 0
    for cond in conditions:
        field = cond.get("Field") or ""
        seen[field] = seen.get(field, 0) + 1
        values = list(cond.get("Values") or [])
        config = cond.get(CONFIG_OF.get(field, ""), None) or {}
        values += list(config.get("Values") or [])
        total += len(values)
    for field in ONCE_FIELDS:
        if seen.get(field, 0) > 1:
            raise Refusal("ValidationError", f"A rule can only have one '{field}' condition")
    if total > 5:
        raise Refusal("ValidationError", f"A rule can only have '5' condition values (this one has {total})")


@rule("elbv2", "CreateRule")
def elb_rule_priority_and_count(params: dict, ctx: Ctx) -> None:
    backend = ctx.elbv2()
    arn = params.get("ListenerArn")
    lb = next((b for b in backend.load_balancers.values() if arn in b.listeners), None)
    if lb is None:
        return
    try:
        priority = int(params.get("Priority"))
    except (TypeError, ValueError):
        return
    listener = lb.listeners[arn]
    if any(str(r.priority) == str(priority) for r in listener.rules.values()):
        raise Refusal("PriorityInUse", f"Priority '{priority}' is currently in use")
    rules = sum(len(getattr(x, "_non_default_rules", {})) for x in lb.listeners.values())
    if rules >= 100:
        raise Refusal("TooManyRules", f"The load balancer already has {rules} rules; the limit is '100'")


@rule("elbv2", "SetRulePriorities")
def elb_rule_priorities_unique(params: dict, ctx: Ctx) -> None:
    prios = [str(p.get("Priority")) for p in params.get("RulePriorities") or []]
    dup = next((p for p in prios if prios.count(p) > 1), None)
    if dup is not None:
        raise Refusal("ValidationError", f"Priority '{dup}' was provided multiple times")


def elb_resource_tags(backend, arn: str) -> dict:
    try:
        return backend.tagging_service.get_tag_dict_for_resource(arn)
    except Exception:  # noqa: BLE001
        return {}


def elb_tag_list(tags: list, existing: dict) -> None:
    for tag in tags or []:
        value = tag.get("Value") or ""
        # ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$ (the model validation also checks it; kept for ELB's own code)
        rx = pattern_for(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")
        if rx is not None and not rx.fullmatch(value):
            raise Refusal("ValidationError", f"Tag value '{value}' of tag '{tag.get('Key')}' must match "
                          r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")
    keys = {t.get("Key") for t in tags or []} | set(existing)
    if len(keys) > 50:
        raise Refusal("TooManyTags", f"A resource can have at most 50 tags; this request would give it {len(keys)}")


@rule("elbv2", "AddTags")
def elb_tags_add(params: dict, ctx: Ctx) -> None:
    backend = ctx.elbv2()
    for arn in params.get("ResourceArns") or []:
        elb_tag_list(params.get("Tags") or [], elb_resource_tags(backend, arn))


@rule("elbv2", "CreateLoadBalancer", "CreateTargetGroup", "CreateListener", "CreateRule", "CreateTrustStore")
def elb_tags_create(params: dict, ctx: Ctx) -> None:
    elb_tag_list(params.get("Tags") or [], {})


# ---------------------------------------------------------------- RDS
# operation -> (identifier parameter, instance or cluster, the states in which AWS accepts it)
RDS_STATES = {
    "StopDBInstance": ("DBInstanceIdentifier", "instance", {"available"}),
    "StartDBInstance": ("DBInstanceIdentifier", "instance", {"stopped"}),
    "CreateDBSnapshot": ("DBInstanceIdentifier", "instance", {"available", "backing-up", "stopped"}),
    "ModifyDBInstance": ("DBInstanceIdentifier", "instance", {"available", "backing-up", "storage-optimization"}),
    "StopDBCluster": ("DBClusterIdentifier", "cluster", {"available"}),
    "StartDBCluster": ("DBClusterIdentifier", "cluster", {"stopped"}),
    "CreateDBClusterSnapshot": ("DBClusterIdentifier", "cluster", {"available", "backing-up", "stopped"}),
    "ModifyDBCluster": ("DBClusterIdentifier", "cluster", {"available", "backing-up"}),
}


def _rds_state_rule(operation: str):
    key, kind, allowed = RDS_STATES[operation]

    def check(params: dict, ctx: Ctx) -> None:
        ident = (params.get(key) or "").split(":")[-1]
        backend = ctx.rds()
        obj = (backend.databases if kind == "instance" else backend.clusters).get(ident)
        if obj is None or obj.status in allowed:
            return
        states = ", ".join(sorted(allowed))
        if kind == "instance":
            raise Refusal("InvalidDBInstanceState", f"{operation}: DB instance {ident} is in state "
                          f"'{obj.status}'; the operation needs one of: {states}.")
        raise Refusal("InvalidDBClusterStateFault", f"{operation}: DB cluster {ident} is in state "
                      f"'{obj.status}'; the operation needs one of: {states}.")
    check.__name__ = f"rds_state_{operation}"
    return check


for _op in RDS_STATES:
    RULES[("rds", _op)] = [_rds_state_rule(_op)]


# =============================================================================
# Behaviour AWS has and moto lacks (installed once, only in strict mode)
# =============================================================================

def install() -> None:
    from moto.ecs.exceptions import TaskDefinitionNotFoundException
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.elbv2.models import ELBv2Backend

    orig_describe = EC2ContainerServiceBackend.describe_task_definition

    def describe_task_definition(self, task_definition_str: str):
        """A family alone names its latest ACTIVE revision (moto: the latest, even INACTIVE)."""
        if ENABLED and ":" not in task_definition_str.split("/")[-1]:
            td = ecs_task_definition(self, task_definition_str)
            if td is None:
                raise TaskDefinitionNotFoundException()
            return td
        return orig_describe(self, task_definition_str)

    EC2ContainerServiceBackend.describe_task_definition = describe_task_definition

    orig_add_tags = ELBv2Backend.add_tags

    def add_tags(self, resource_arns, tags):
        """AWS allows 50 tags per ELB resource (checked by elb_tags_add); moto stops at 10."""
        if not ENABLED:
            return orig_add_tags(self, resource_arns, tags)
        for arn in resource_arns:
            self._get_resource_by_arn(arn)
            self.tagging_service.tag_resource(arn, tags)

    ELBv2Backend.add_tags = add_tags


def warm() -> None:
    """Load the models and Unicode classes now (about 1 s), not in a test's first request."""
    if ENABLED:
        for name in MODELS.values():
            model(name)
        _category_class("L")


# =============================================================================
# Entry point for local_aws.py
# =============================================================================

def refusal(req: Any, body: bytes, account: str, decode_cbor) -> Refusal | None:
    """The refusal AWS would give this request, or None. Never raises."""
    if not ENABLED:
        return None
    service = req.service or TARGET_PREFIXES.get(getattr(req, "target_prefix", ""), "")
    if service not in MODELS or not req.operation:
        return None
    try:
        if req.operation not in model(MODELS[service]).operation_names:
            return None
        params = request_params(service, req.operation, req.protocol, body, decode_cbor)
        if params is None:
            return None
        validate(service, req.operation, params, lower_first=req.protocol == "query")
        ctx = Ctx(account, req.region or "us-east-1")
        for fn in RULES.get((service, req.operation), []):
            fn(params, ctx)
    except Refusal as r:
        print(f"strict: refused {service} {req.operation}: {r.code}: {r.message}", file=sys.stderr, flush=True)
        STATS["refused"] += 1
        STATS["semantic"] = STATS["refused"] - STATS["validation"]
        return r
    except Exception:  # noqa: BLE001 - a bug here must not turn a valid call into a 500
        STATS["internalErrors"] += 1
        traceback.print_exc(file=sys.stderr)
    return None


def status() -> dict:
    return {"strict": ENABLED, **STATS, "rules": sorted(f"{s}:{o}" for s, o in RULES)}
