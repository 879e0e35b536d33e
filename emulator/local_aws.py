#!/usr/bin/env python3
"""Local AWS emulator for deploy-action's integration tests.

Runs moto 5.2.5's own WSGI app in-process (threaded werkzeug server) and adds:

* ECS roll-outs that settle COMPLETED / FAILED / never, per service rule;
* ECS one-off task lifecycles (exit codes, stop codes, awslogs lines) per task rule;
* RDS snapshots that stay `creating`, instance/cluster stop/start transitions;
* CloudWatch rpc-v2-cbor (what aws-sdk-cloudwatch 1.x speaks) and metric seeding;
* fault injection (throttle / 5xx / latency / connection reset), a call log, and
  AWS-shaped 500s instead of Flask's HTML page when moto crashes.

Control API: JSON under /_test/ (see emulator/README.md). moto is pinned because
everything below patches its internals (moto==5.2.5).

Usage: python emulator/local_aws.py [--host 127.0.0.1] [--port 0] [--verbose]
Prints exactly one line `LOCAL_AWS_READY http://HOST:PORT` on stdout once it answers.
"""
from __future__ import annotations

import argparse
import calendar
import copy
import functools
import gc
import hashlib
import io
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import types
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
import random
from random import randint
from typing import Any

# moto's EC2 backend parses ~500 default AMIs on every reset; nothing here runs instances. Set before moto reads it.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.core.responses import ActionResult
from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.responses import DESCRIBE_TASKS_TAGS, EC2ContainerServiceResponse
from moto.ecs.models import Container, EC2ContainerServiceBackend, Task
from moto.rds import models as rds_models
from moto.rds.responses import RDSResponse
from moto.logs.models import logs_backends
from moto.cloudwatch import models as cw_models
from moto.cloudwatch.models import cloudwatch_backends
from moto.moto_api import state_manager
from moto.moto_api._internal.managed_state_model import ManagedState
from moto.moto_api._internal.models import moto_api_backend
from moto.core.base_backend import AccountSpecificBackend
from moto import backends as moto_backends
from moto.core import responses as moto_responses
from werkzeug.serving import make_server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strict  # noqa: E402 - strict mode: refuse what AWS refuses (emulator/strict.py)
import rds_lifecycle  # noqa: E402 - creation, restore, rename (emulator/rds_lifecycle.py)

# One lock for moto's (not thread-safe) backends and all emulator state. The HTTP
# server is threaded: I/O, latency faults and control calls overlap; backend work
# is serialised here.
LOCK = threading.RLock()
DEFAULT_ACCOUNT = "123456789012"


def now() -> float:
    return time.time()


def dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


class State:
    """Everything /_test/reset clears."""

    def __init__(self) -> None:
        self.service_rules: list[dict] = []
        self.task_rules: list[dict] = []
        self.faults: list[dict] = []
        self.calls: list[dict] = []
        self.seq = 0
        self.rollouts: list[dict] = []  # public records, GET /_test/ecs/rollouts
        self.pending: list["Rollout"] = []  # in-flight roll-outs (describe/ticker settle them)
        self.tasks: dict[str, Task] = {}  # every ECS task we created, by ARN
        self.snapshot_rule: dict = {}
        self.instance_rule: dict = {}


S = State()

# Set when something starts that runs on the clock (a roll-out with settleAfterSeconds, a task with runningSeconds or
# generated lines): with nothing timed in flight the ticker sleeps until then instead of waking 50 times a second
# (a dozen idle emulators kept a core busy).
WAKE = threading.Event()


# A service's regions, computed once per process. moto caches them per backend instance (an lru_cache keyed on the
# backend, whose id is a fresh uuid), so every backend a reset recreates loaded botocore's endpoint and service model
# JSON again: about a quarter of the emulator's CPU in the tests. The answer depends on the service name alone.
_REGIONS: dict[str, list[str]] = {}
_generate_regions = AccountSpecificBackend._generate_regions.__wrapped__


def _regions_once(self, service_name: str) -> list[str]:
    if service_name not in _REGIONS:
        _REGIONS[service_name] = _generate_regions(self, service_name)
    return list(_REGIONS[service_name])


AccountSpecificBackend._generate_regions = _regions_once

# Two more answers moto recomputes on every request that never change in a running emulator: the list of its service
# packages (a directory listing and a stat per entry, to route the request) and the action methods of a response class
# (inspect.getmembers). Every class is patched at import time, before the first request.
_MOTO_MODULES = tuple(moto_backends.list_of_moto_modules())
moto_backends.list_of_moto_modules = lambda: _MOTO_MODULES
moto_responses.method_names_from_class = functools.lru_cache(maxsize=None)(moto_responses.method_names_from_class)


def take_rule(rules: list[dict], matches) -> dict | None:
    """Most recent matching rule first; rules with `times` expire after K uses."""
    for rule in reversed(rules):
        if not matches(rule):
            continue
        if rule.get("times") is not None:
            if rule["_left"] <= 0:
                continue
            rule["_left"] -= 1
        return rule
    return None


def add_rule(rules: list[dict], body: dict) -> dict:
    rule = dict(body)
    if rule.get("times") is not None:
        rule["_left"] = int(rule["times"])
    rules.append(rule)
    return rule


def public(rule: dict) -> dict:
    out = {k: v for k, v in rule.items() if not k.startswith("_")}
    if "_left" in rule:
        out["remaining"] = rule["_left"]
    return out


# =============================================================================
# ECS: helpers shared by services and tasks
# =============================================================================

def fix_awsvpc(net: dict | None) -> dict | None:
    """moto crashes (KeyError) on awsvpcConfiguration without securityGroups."""
    if net and isinstance(net.get("awsvpcConfiguration"), dict):
        net["awsvpcConfiguration"].setdefault("securityGroups", [])
    return net


_orig_calc = EC2ContainerServiceBackend._calculate_task_resource_requirements


def _calc_requirements(task_definition: Any) -> dict:
    """moto crashes (TypeError) when a container has no memory; use task memory or 512."""
    try:
        task_mem = int(task_definition.memory or 512)
    except (TypeError, ValueError):
        task_mem = 512
    defs = []
    for cd in task_definition.container_definitions:
        if not any(k in cd for k in ("memory", "Memory", "memoryReservation", "MemoryReservation")):
            cd = dict(cd, memory=task_mem)
        defs.append(cd)
    return _orig_calc(types.SimpleNamespace(container_definitions=defs))


EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(_calc_requirements)


# Task.lastStatus: emulator-managed tasks carry `_emu_status`; others keep moto's ManagedState.
def _get_last_status(self: Task) -> str:
    if getattr(self, "_emu_status", None):
        return self._emu_status
    return ManagedState.status.fget(self)  # type: ignore[attr-defined]


def _set_last_status(self: Task, value: str) -> None:
    if getattr(self, "_emu_status", None):
        self._emu_status = value
    else:
        self.status = value


Task.last_status = property(_get_last_status, _set_last_status)  # type: ignore[assignment]


def build_containers(task: Task, td: Any) -> None:
    """All containers of the task definition (moto reports only the first), with the task's ARN."""
    eni = []
    for att in task.attachments or []:
        det = {d["name"]: d["value"] for d in att.get("details", [])}
        if det.get("privateIPv4Address"):
            eni = [{"attachmentId": att["id"], "privateIpv4Address": det["privateIPv4Address"]}]
    containers = []
    for cd in td.container_definitions:
        c = Container.__new__(Container)
        c.container_arn = (
            f"arn:aws:ecs:{task.region_name}:{task._account_id}:container/"
            f"{task.cluster_name}/{task.id}/{uuid.uuid4()}"
        )
        c.task_arn = task.task_arn
        c.name = cd.get("name")
        c.image = cd.get("image")
        c.last_status = "PENDING"
        c.exitCode = None
        c.reason = None
        c.network_interfaces = eni
        c.network_bindings = []
        c.health_status = "UNKNOWN"
        c.cpu = cd.get("cpu", 0)
        c.memory = cd.get("memory")
        c.memory_reservation = cd.get("memoryReservation")
        c._essential = cd.get("essential", True)
        c._log = cd.get("logConfiguration") or {}
        containers.append(c)
    task.containers = containers


def init_task(task: Task, td: Any, status: str, t: float) -> None:
    task._emu_status = status
    task._emu = None  # lifecycle state for one-off tasks (TaskSim)
    task._emu_service = None
    task.created_at = dt(t)
    task.cpu = td.cpu
    task.memory = td.memory
    task.version = 1
    task.health_status = "UNKNOWN"
    task.availability_zone = f"{task.region_name}a"
    task.stop_code = None
    task.stopped_reason = None
    if task.launch_type == "FARGATE":
        task.platform_version = task.platform_version or "1.4.0"
        task.platform_family = "Linux"
    build_containers(task, td)
    S.tasks[task.task_arn] = task


def start_task_running(task: Task, t: float) -> None:
    task._emu_status = "RUNNING"
    task.pull_started_at = task.created_at
    task.pull_stopped_at = dt(t)
    task.started_at = dt(t)
    task.connectivity = "CONNECTED"
    task.connectivity_at = dt(t)
    for c in task.containers:
        c.last_status = "RUNNING"
        c.runtime_id = uuid.uuid4().hex


def stop_task_now(task: Task, t: float, exit_code: int | None, stop_code: str, reason: str,
                  all_exit: int | None = None) -> None:
    """STOPPED with stop code; exitCode on the first essential container, others 0 (or all_exit)."""
    task._emu_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stop_code = stop_code
    task.stopped_reason = reason
    task.stopping_at = task.execution_stopped_at = task.stopped_at = dt(t)
    first = next((c for c in task.containers if c._essential), task.containers[0] if task.containers else None)
    for c in task.containers:
        c.last_status = "STOPPED"
        if stop_code == "TaskFailedToStart":
            c.exitCode = None
            c.reason = reason
        elif all_exit is not None:
            c.exitCode = all_exit
        else:
            c.exitCode = exit_code if c is first else 0
    sim = getattr(task, "_emu", None)
    if sim is not None:
        sim["done"] = True


# ---------------------------------------------------------------- awslogs writer
_last_ts: dict[tuple, int] = {}


def awslogs_target(task: Task) -> tuple | None:
    """(account, region, group, stream) the awslogs driver would use for the main container."""
    cs = sorted(task.containers, key=lambda c: not c._essential)
    for c in cs:
        if c._log.get("logDriver") == "awslogs":
            o = c._log.get("options") or {}
            group = o.get("awslogs-group")
            if not group:
                continue
            prefix = o.get("awslogs-stream-prefix")
            stream = f"{prefix}/{c.name}/{task.id}" if prefix else f"{c.name}/{task.id}"
            return task._account_id, o.get("awslogs-region") or task.region_name, group, stream
    return None


def write_logs(task: Task, lines: list[str], spread: bool = True) -> None:
    target = awslogs_target(task)
    if not target:
        return
    account, region, group, stream = target
    backend = logs_backends[account][region]
    if group not in backend.groups:
        backend.create_log_group(group, {})
    if stream not in backend.groups[group].streams:
        backend.create_log_stream(group, stream)  # ECS creates it when the container starts
    if not lines:
        return
    key = (account, region, group, stream)
    ts = max(int(now() * 1000), _last_ts.get(key, 0))
    events = []
    for i, line in enumerate(lines):
        events.append({"timestamp": ts + (i if spread else 0), "message": str(line)})
    _last_ts[key] = events[-1]["timestamp"] + (1 if spread else 0)
    backend.put_log_events(group, stream, events)


# =============================================================================
# ECS: one-off tasks (run_task / describe_tasks / stop_task)
# =============================================================================
_orig_run_task = EC2ContainerServiceBackend.run_task


def _run_task(self, cluster_str, task_definition_str, count, overrides, started_by, tags,
              launch_type, networking_configuration=None, group=None, platform_version=None,
              capacity_provider_strategy=None):
    fix_awsvpc(networking_configuration)
    tasks = _orig_run_task(self, cluster_str, task_definition_str, count, overrides, started_by,
                           tags, launch_type, networking_configuration, group, platform_version,
                           capacity_provider_strategy)
    td = self.describe_task_definition(task_definition_str)
    match_doc = json.dumps({
        "cluster": cluster_str, "taskDefinition": task_definition_str, "taskDefinitionArn": td.arn,
        "overrides": overrides, "startedBy": started_by, "group": group, "tags": tags,
        "launchType": launch_type,
    })
    t = now()
    for task in tasks:
        init_task(task, td, "PROVISIONING", t)
        rule = take_rule(S.task_rules, lambda r: r.get("match", "") in match_doc) or {}
        gen = rule.get("generateLines")
        run_secs = rule.get("runningSeconds")
        if run_secs is None and gen:
            run_secs = float(gen.get("overSeconds", 0))
        run_desc = rule.get("runningDescribes", rule.get("describes"))
        if run_desc is None and run_secs is None:
            run_desc = 1
        task._emu = {
            "rule": public(rule), "created": t, "started": None, "describes": 0, "done": False,
            "run_desc": run_desc, "run_secs": run_secs, "gen": dict(gen, written=0) if gen else None,
        }
        if run_secs is not None:
            WAKE.set()
    return tasks


EC2ContainerServiceBackend.run_task = _run_task


PULL_ERROR = ("CannotPullContainerError: pull image manifest has been retried 5 time(s): "
              "failed to resolve ref: not found")


def task_step(task: Task, t: float, describe: bool) -> None:
    """Advance one emulated task: PROVISIONING -> RUNNING -> STOPPED, by rule."""
    sim = task._emu
    if sim is None or sim["done"] or task._emu_status == "STOPPED":
        return
    rule = sim["rule"]
    timed = sim["run_secs"] is not None
    if rule.get("stopCode") == "TaskFailedToStart":
        if describe:
            stop_task_now(task, t, None, "TaskFailedToStart", rule.get("stoppedReason", PULL_ERROR))
        return
    if task._emu_status == "PROVISIONING":
        if not (describe or timed):
            return
        start = sim["created"] if timed else t
        start_task_running(task, start)
        sim["started"] = start
        write_logs(task, rule.get("logs") or [])  # also creates the awslogs stream
    if describe:
        sim["describes"] += 1
    gen_flush(task, t)
    if rule.get("neverStop") or (sim["gen"] and sim["gen"]["written"] < int(sim["gen"]["count"])):
        return
    ok_desc = sim["run_desc"] is None or sim["describes"] > int(sim["run_desc"])
    deadline = sim["started"] + float(sim["run_secs"] or 0)
    ok_time = sim["run_secs"] is None or t >= deadline
    if ok_desc and ok_time:
        # purely time-based: stop at the planned moment (not later than the last generated line)
        at = max(deadline, sim.get("gen_end", deadline)) if timed and sim["run_desc"] is None else t
        stop_task_now(task, at, int(rule.get("exitCode", 0)), rule.get("stopCode", "EssentialContainerExited"),
                      rule.get("stoppedReason", "Essential container in task exited"))


def gen_flush(task: Task, t: float) -> None:
    """generateLines: write the lines due by `t`, evenly over overSeconds (last ones at the end)."""
    sim = task._emu
    g = sim and sim["gen"]
    if not g or sim["started"] is None:
        return
    count, over = int(g["count"]), float(g.get("overSeconds", 0))
    frac = 1.0 if over <= 0 else min(1.0, (t - sim["started"]) / over)
    due = count if frac >= 1.0 else int(count * frac)
    if due > g["written"]:
        tpl = g.get("template", "line {i}")
        write_logs(task, [tpl.replace("{i}", str(i + 1)) for i in range(g["written"], due)], spread=False)
        g["written"] = due
        if due >= count:
            sim["gen_end"] = t


def describe_tasks(backend: EC2ContainerServiceBackend, cluster_str: str, refs: list[str]):
    cluster = backend._get_cluster(cluster_str)
    if not refs:
        raise InvalidParameterException("Tasks cannot be empty.")
    mine = backend.tasks.get(cluster.name, {})
    found, failures, t = [], [], now()
    for ref in refs:
        tid = ref.split("/")[-1]
        task = next((x for arn, x in mine.items() if arn == ref or arn.split("/")[-1] == tid), None)
        if task is None:
            arn = ref if ref.startswith("arn:") else (
                f"arn:aws:ecs:{backend.region_name}:{backend.account_id}:task/{cluster.name}/{ref}")
            failures.append({"arn": arn, "reason": "MISSING"})
            continue
        if getattr(task, "_emu_status", None) is None:
            task.advance()  # a task moto created some other way: keep moto's behaviour
        else:
            task_step(task, t, describe=True)
        if task not in found:
            found.append(task)
    return found, failures


def _resp_describe_tasks(self):
    tasks, failures = describe_tasks(self.ecs_backend, self._get_param("cluster", "default"),
                                     self._get_param("tasks", []))
    if "TAGS" in (self._get_param("include", []) or []):
        self._include_in_response(DESCRIBE_TASKS_TAGS)
    else:
        self._exclude_from_response(DESCRIBE_TASKS_TAGS)
    return ActionResult({"tasks": tasks, "failures": failures})


EC2ContainerServiceResponse.describe_tasks = _resp_describe_tasks


def _resp_list_tasks(self):
    """list_tasks honouring serviceName, family, startedBy, desiredStatus (default RUNNING), launchType."""
    backend = self.ecs_backend
    cluster = backend._get_cluster(self._get_param("cluster", "default"))
    family = self._get_param("family")
    svc = self._get_param("serviceName")
    svc = svc.split("/")[-1] if svc else None
    started_by = self._get_param("startedBy")
    desired = self._get_param("desiredStatus") or "RUNNING"
    launch = self._get_param("launchType")
    ci = self._get_param("containerInstance")
    td_arns = backend.list_task_definitions(family) if family else None
    arns = []
    for task in backend.tasks.get(cluster.name, {}).values():
        if family and task.task_definition_arn not in td_arns:
            continue
        if svc and getattr(task, "_emu_service", None) != svc:
            continue
        if started_by and task.started_by != started_by:
            continue
        if launch and task.launch_type != launch:
            continue
        if ci and ci not in (task.container_instance_arn or ""):
            continue
        if task.desired_status != desired:
            continue
        arns.append(task.task_arn)
    return ActionResult({"taskArns": arns})


EC2ContainerServiceResponse.list_tasks = _resp_list_tasks

_orig_stop_task = EC2ContainerServiceBackend.stop_task


def _stop_task(self, cluster_str, task_str, reason):
    try:
        task = _orig_stop_task(self, cluster_str, task_str, reason)
    except Exception as e:
        if type(e) is Exception:  # moto raises a bare Exception for an unknown task
            raise InvalidParameterException("The referenced task was not found.") from None
        raise
    if getattr(task, "_emu_status", None):
        stop_task_now(task, now(), None, "UserInitiated", reason or "Task stopped by user", all_exit=137)
    return task


EC2ContainerServiceBackend.stop_task = _stop_task


# =============================================================================
# ECS: services and rolling deployments
# =============================================================================

class Rollout:
    """One in-flight deployment (kind=deployment) or scale convergence (kind=scale)."""

    def __init__(self, service, kind: str, deployment: dict, rule: dict, t: float):
        self.service, self.kind, self.deployment, self.started = service, kind, deployment, t
        self.rule = rule
        self.outcome = rule.get("outcome", rule.get("rolloutState", "COMPLETED"))
        self.after_seconds = rule.get("settleAfterSeconds")
        if self.after_seconds is not None:
            WAKE.set()
        self.after_describes = rule.get("settleAfterDescribes")
        if self.after_describes is None and self.after_seconds is None:
            self.after_describes = 1
        self.describes = 0
        self.task_ids: list[str] = []
        self.record = {
            "service": service.name, "cluster": service.cluster_name, "kind": kind,
            "deploymentId": deployment["id"], "taskDefinition": deployment["taskDefinition"],
            "outcome": self.outcome if kind == "deployment" else "COMPLETED",
            "state": "IN_PROGRESS", "startedAt": t, "settledAt": None,
        }


def svc_event(service, msg: str, t: float) -> None:
    service.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": dt(t), "message": msg})
    del service.events[100:]


def svc_tasks(service, deployment_id: str | None = None) -> list[Task]:
    return [
        x for x in service._backend.tasks.get(service.cluster_name, {}).values()
        if getattr(x, "_emu_service", None) == service.name and x.desired_status == "RUNNING"
        and (deployment_id is None or x.started_by == deployment_id)
    ]


def new_service_task(service, deployment: dict, task_id: str, t: float) -> Task:
    backend = service._backend
    td = backend.describe_task_definition(deployment["taskDefinition"])
    proxy = types.SimpleNamespace(arn=td.arn, network_mode="bridge", family=td.family,
                                  container_definitions=td.container_definitions)
    cluster = backend.clusters[service.cluster_name]
    task = Task(cluster, proxy, None, None, backend=backend, group=f"service:{service.name}",
                launch_type=service.launch_type or "", started_by=deployment["id"],
                platform_version=service.platform_version)
    task.id = task_id
    init_task(task, td, "PENDING", t)
    task._emu_service = service.name
    backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
    return task


def stop_service_tasks(service, tasks: list[Task], t: float, deployment_id: str) -> None:
    if not tasks:
        return
    for x in tasks:
        stop_task_now(x, t, None, "ServiceSchedulerInitiated",
                      f"Scaling activity initiated by (deployment {deployment_id})", all_exit=0)
    svc_event(service, f"(service {service.name}) has stopped {len(tasks)} running tasks: "
              + " ".join(f"(task {x.id})" for x in tasks) + ".", t)


def start_ids(service, n: int, t: float) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(max(n, 0))]
    if ids:
        svc_event(service, f"(service {service.name}) has started {len(ids)} tasks: "
                  + " ".join(f"(task {i})" for i in ids) + ".", t)
    return ids


def new_deployment(service, t: float) -> None:
    """Rotate deployments: the PRIMARY becomes ACTIVE, a new IN_PROGRESS PRIMARY starts."""
    for ro in [r for r in S.pending if r.service is service]:
        ro.record["state"] = "SUPERSEDED"
        S.pending.remove(ro)
    for d in service.deployments:
        d["status"] = "ACTIVE"
    dep_id = f"ecs-svc/{randint(10**18, 10**19 - 1)}"
    desired = int(service.desired_count or 0)
    fargate = (service.launch_type or "").upper() == "FARGATE"
    dep = {
        "id": dep_id, "status": "PRIMARY", "taskDefinition": service.task_definition,
        "desiredCount": desired, "pendingCount": desired, "runningCount": 0, "failedTasks": 0,
        "createdAt": dt(t), "updatedAt": dt(t), "launchType": service.launch_type,
        "platformVersion": service.platform_version or ("1.4.0" if fargate else None),
        "platformFamily": "Linux" if fargate else None,
        "networkConfiguration": service.network_configuration or None,
        "rolloutState": "IN_PROGRESS", "rolloutStateReason": f"ECS deployment {dep_id} in progress.",
    }
    service.deployments.insert(0, dep)
    service.running_count = sum(int(d.get("runningCount", 0)) for d in service.deployments[1:])
    service.pending_count = desired
    rule = take_rule(S.service_rules, lambda r: r.get("service") in ("*", service.name, service.arn)) or {}
    ro = Rollout(service, "deployment", dep, public(rule), t)
    ro.task_ids = start_ids(service, desired, t)
    S.rollouts.append(ro.record)
    S.pending.append(ro)


def new_scale(service, t: float) -> None:
    """Only desiredCount changed: no new deployment; the PRIMARY converges at settle time."""
    dep = service.deployments[0]
    desired = int(service.desired_count or 0)
    dep["desiredCount"] = desired
    dep["updatedAt"] = dt(t)
    in_flight = [r for r in S.pending if r.service is service]
    if any(r.kind == "deployment" for r in in_flight):
        dep["pendingCount"] = desired  # the deployment's settle converges to the new count
        service.pending_count = desired
        return
    for ro in in_flight:
        ro.record["state"] = "SUPERSEDED"
        S.pending.remove(ro)
    running = len(svc_tasks(service, dep["id"]))
    dep["runningCount"] = running
    dep["pendingCount"] = max(desired - running, 0)
    service.running_count = len(svc_tasks(service))
    service.pending_count = dep["pendingCount"]
    if desired == running:
        return
    rule = next((r for r in reversed(S.service_rules)  # timing only: a scale uses up no `times`
                 if r.get("service") in ("*", service.name, service.arn) and r.get("_left", 1) > 0), {})
    ro = Rollout(service, "scale", dep, public(rule), t)
    ro.task_ids = start_ids(service, desired - running, t)
    S.rollouts.append(ro.record)
    S.pending.append(ro)


def settle_check(ro: Rollout, t: float, describe: bool) -> None:
    if describe:
        ro.describes += 1
    if ro.outcome == "NEVER":
        return
    ok_desc = ro.after_describes is None or ro.describes > int(ro.after_describes)
    deadline = ro.started + float(ro.after_seconds or 0)
    ok_time = ro.after_seconds is None or t >= deadline
    if ok_desc and ok_time:
        settle(ro, deadline if ro.after_describes is None else t)


def settle(ro: Rollout, t: float) -> None:
    service, dep, name = ro.service, ro.deployment, ro.service.name
    S.pending.remove(ro)
    ro.record["settledAt"] = t
    desired = int(service.desired_count or 0)
    dep["updatedAt"] = dt(t)
    if ro.kind == "deployment" and ro.outcome == "FAILED":
        n = int(ro.rule.get("failedTasks", 3))
        ids = (ro.task_ids + [uuid.uuid4().hex for _ in range(n)])[:n]
        code = ro.rule.get("taskStopCode", "EssentialContainerExited")
        for tid in ids:
            task = new_service_task(service, dep, tid, t)
            if code != "TaskFailedToStart":  # those never ran: no startedAt, logs or exit code
                start_task_running(task, t)
                write_logs(task, ro.rule.get("taskLogs") or [])
            stop_task_now(task, t, int(ro.rule.get("taskExitCode", 1)), code,
                          ro.rule.get("taskStoppedReason", PULL_ERROR if code == "TaskFailedToStart"
                                      else "Essential container in task exited"))
        dep.update(rolloutState="FAILED", failedTasks=n, runningCount=0, pendingCount=0,
                   rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.")
        service.running_count = sum(int(d.get("runningCount", 0)) for d in service.deployments[1:])
        service.pending_count = 0
        ro.record["state"] = "FAILED"
        svc_event(service, f"(service {name}) (deployment {dep['id']}) deployment failed: tasks failed to start.", t)
        return
    # COMPLETED (or a scale converging): the primary runs `desired` tasks, everything else drains.
    running = svc_tasks(service, dep["id"])
    ids = list(ro.task_ids)
    while len(running) < desired:
        task = new_service_task(service, dep, ids.pop(0) if ids else uuid.uuid4().hex, t)
        start_task_running(task, t)
        running.append(task)
    stop_service_tasks(service, running[desired:], t, dep["id"])
    if ro.kind == "deployment":
        stop_service_tasks(service, [x for x in svc_tasks(service) if x.started_by != dep["id"]], t, dep["id"])
        del service.deployments[1:]
        dep.update(rolloutState="COMPLETED", rolloutStateReason=f"ECS deployment {dep['id']} completed.")
        svc_event(service, f"(service {name}) (deployment {dep['id']}) deployment completed.", t)
    dep.update(runningCount=desired, pendingCount=0, desiredCount=desired)
    service.running_count, service.pending_count = desired, 0
    ro.record["state"] = "COMPLETED"
    svc_event(service, f"(service {name}) has reached a steady state.", t)


def settle_service(service, t: float, describe: bool) -> None:
    for ro in [r for r in S.pending if r.service is service]:
        settle_check(ro, t, describe)


_orig_create_service = EC2ContainerServiceBackend.create_service


def _create_service(self, cluster_str, service_name, desired_count, task_definition_str=None,
                    *args, **kwargs):
    fix_awsvpc(kwargs.get("network_configuration"))
    service = _orig_create_service(self, cluster_str, service_name, desired_count,
                                   task_definition_str, *args, **kwargs)
    t = now()
    service.created_at = dt(t)
    service.events = []
    service.deployment_configuration = {
        "deploymentCircuitBreaker": {"enable": False, "rollback": False},
        "maximumPercent": 200, "minimumHealthyPercent": 100,
    }
    service.deployments = []
    if service.deployment_controller.get("type", "ECS") == "ECS" and service.task_definition:
        new_deployment(service, t)
    service.running_count, service.pending_count = 0, int(desired_count or 0)
    return service


EC2ContainerServiceBackend.create_service = _create_service

_orig_resp_create_service = EC2ContainerServiceResponse.create_service


def _resp_create_service(self):
    res = _orig_resp_create_service(self)
    conf = self._get_param("deploymentConfiguration")
    if conf:
        res.result["service"].deployment_configuration = conf
    return res


EC2ContainerServiceResponse.create_service = _resp_create_service

_orig_update_service = EC2ContainerServiceBackend.update_service


def _update_service(self, props: dict):
    fix_awsvpc(props.get("network_configuration"))
    td_str = props.get("task_definition")
    force = bool(props.get("force_new_deployment"))
    desired_given = props.get("desired_count") is not None
    service = _orig_update_service(self, props)
    t = now()
    if td_str:
        service.task_definition = self.describe_task_definition(td_str).arn  # moto stores the raw string
    primary = service.deployments[0] if service.deployments else None
    if primary is None or force or service.task_definition != primary["taskDefinition"]:
        new_deployment(service, t)
    elif desired_given:
        new_scale(service, t)
    else:  # moto zeroed/overwrote counts: restore them from the deployments
        service.running_count = sum(int(d.get("runningCount", 0)) for d in service.deployments)
        service.pending_count = int(primary.get("pendingCount", 0))
    return service


EC2ContainerServiceBackend.update_service = _update_service

_orig_describe_services = EC2ContainerServiceBackend.describe_services


def _describe_services(self, cluster_str, names):
    result, failures = _orig_describe_services(self, cluster_str, names)
    t = now()
    seen = set()
    for service in result:
        if id(service) not in seen:
            seen.add(id(service))
            settle_service(service, t, describe=True)
    return result, failures


EC2ContainerServiceBackend.describe_services = _describe_services

_orig_delete_service = EC2ContainerServiceBackend.delete_service


def _delete_service(self, cluster_name, service_name, force):
    service = _orig_delete_service(self, cluster_name, service_name, force)
    for ro in [r for r in S.pending if r.service is service]:
        ro.record["state"] = "SUPERSEDED"
        S.pending.remove(ro)
    for x in svc_tasks(service):
        stop_task_now(x, now(), None, "ServiceSchedulerInitiated", "Service deleted", all_exit=0)
    return service


EC2ContainerServiceBackend.delete_service = _delete_service


def task_view(task: Task) -> dict:
    return {
        "taskArn": task.task_arn, "cluster": task.cluster_name, "region": task.region_name,
        "taskDefinitionArn": task.task_definition_arn, "lastStatus": task.last_status,
        "desiredStatus": task.desired_status, "stopCode": getattr(task, "stop_code", None),
        "stoppedReason": getattr(task, "stopped_reason", None) or None,
        "exitCodes": {c.name: getattr(c, "exitCode", None) for c in task.containers},
        "startedBy": task.started_by, "group": task.group,
        "service": getattr(task, "_emu_service", None),
        "rule": (getattr(task, "_emu", None) or {}).get("rule"),
        "linesWritten": ((getattr(task, "_emu", None) or {}).get("gen") or {}).get("written"),
        "createdAt": epoch(getattr(task, "created_at", None)),
        "stoppedAt": epoch(getattr(task, "stopped_at", None)) if task.last_status == "STOPPED" else None,
    }


def epoch(t: Any) -> float | None:
    """A task's datetime as epoch seconds (None when unset)."""
    return t.timestamp() if isinstance(t, datetime) else None


# =============================================================================
# RDS: snapshot progress, stop/start transitions
# =============================================================================

def _snapshot_init_wrapper(cls):
    orig = cls.__init__

    def __init__(self, *args, **kwargs):
        orig(self, *args, **kwargs)
        self.percent_progress = 100
        rule = S.snapshot_rule
        n = int(rule.get("creatingDescribes", 0) or 0)
        if self.snapshot_type == "manual" and (n > 0 or rule.get("neverAvailable")):
            self.status, self.percent_progress = "creating", 0
            self._emu_creating = {"total": n, "seen": 0, "never": bool(rule.get("neverAvailable"))}

    cls.__init__ = __init__


_snapshot_init_wrapper(rds_models.DBSnapshot)
_snapshot_init_wrapper(rds_models.DBClusterSnapshot)


def snapshot_step(snap) -> None:
    st = getattr(snap, "_emu_creating", None)
    if not st:
        return
    st["seen"] += 1
    if st["never"]:
        snap.percent_progress = min(95, 5 * st["seen"])
    elif st["seen"] > st["total"]:
        snap.status, snap.percent_progress = "available", 100
        snap._emu_creating = None
    else:
        snap.percent_progress = int(100 * st["seen"] / (st["total"] + 1))


def instance_step(obj) -> None:
    """One describe that includes `obj`: a start/stop ends after `left` more describes or at `until` (epoch s),
    and then records its completion event (see `record_rds_event`) dated when it ended."""
    tr = getattr(obj, "_emu_transition", None)
    if not tr:
        return
    if "until" in tr:
        if time.time() < tr["until"]:
            return
        ended = tr["until"]
    else:
        tr["left"] -= 1
        if tr["left"] >= 0:
            return
        ended = time.time()
    obj.status = tr["target"]
    obj._emu_transition = None
    record_rds_event(obj, tr["event"], ended)


# The completion events of a start/stop, as the RDS event catalogue lists them (RDS-EVENT-0088/0087 for a DB
# instance, RDS-EVENT-0151/0150 for a DB cluster: https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/
# USER_Events.Messages.html and .../AuroraUserGuide/USER_Events.Messages.html). moto 5.2.5 records none.
RDS_DONE_EVENTS = {
    ("DBInstance", "available"): "DB instance started",
    ("DBInstance", "stopped"): "DB instance stopped",
    ("DBCluster", "available"): "DB cluster started",
    ("DBCluster", "stopped"): "DB cluster stopped",
}


def record_rds_event(obj, message: str, at: float) -> None:
    """Appends an event of DB instance or cluster `obj` to moto's event list (what DescribeEvents returns), dated
    `at` (epoch seconds)."""
    ev = rds_models.Event.__new__(rds_models.Event)
    cluster = isinstance(obj, rds_models.DBCluster)
    ev.source_identifier = obj.db_cluster_identifier if cluster else obj.db_instance_identifier
    ev.source_type = "db-cluster" if cluster else "db-instance"
    ev.message = message
    ev.event_categories = ["notification"]
    ev.source_arn = obj.arn
    ev.date = datetime.fromtimestamp(at, timezone.utc).replace(tzinfo=None)  # naive UTC, as moto's own
    obj.backend.events.append(ev)
    obj.backend.events.sort(key=lambda e: e.date)


def _after(cls, name: str, fn) -> None:
    """Wrap a moto response method: fn(response_handler, ActionResult) runs before serialisation."""
    orig = getattr(cls, name)

    def wrapper(self):
        res = orig(self)
        fn(self, res)
        return res

    setattr(cls, name, wrapper)


_after(RDSResponse, "describe_db_snapshots", lambda h, r: [snapshot_step(s) for s in r.result["DBSnapshots"]])
_after(RDSResponse, "describe_db_cluster_snapshots",
       lambda h, r: [snapshot_step(s) for s in r.result["DBClusterSnapshots"]])
_after(RDSResponse, "describe_db_instances", lambda h, r: [instance_step(d) for d in r.result["DBInstances"]])
_after(RDSResponse, "describe_db_clusters", lambda h, r: [instance_step(c) for c in r.result["DBClusters"]])


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def events_in_window(handler, res) -> None:
    """DescribeEvents answers the events of its time window only (moto 5.2.5 answers them all). The API reference
    (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DescribeEvents.html): `StartTime` "The beginning
    of the time interval to retrieve events for", `EndTime` "The end of the time interval for which to retrieve
    events", `Duration` "The number of minutes to retrieve events for. Default: 60". Without `EndTime` the window ends
    now; without `StartTime` it starts `Duration` minutes before its end."""
    p = handler.params
    end = _naive_utc(p["end_time"]) if p.get("end_time") else datetime.now(timezone.utc).replace(tzinfo=None)
    start = (_naive_utc(p["start_time"]) if p.get("start_time")
             else end - timedelta(minutes=int(p.get("duration") or 60)))
    res.result["Events"] = [e for e in res.result["Events"] if start <= e.date <= end]


_after(RDSResponse, "describe_events", events_in_window)


def _transition(key: str, real_of, shown: str, target: str):
    """Responses say stopping/starting (as AWS); describes follow instance-rules."""

    def fn(handler, res):
        real = real_of(handler)
        n = int(S.instance_rule.get("transitionDescribes", 0) or 0)
        secs = float(S.instance_rule.get("transitionSeconds", 0) or 0)
        view = copy.copy(res.result[key]) if res.result[key] is real else res.result[key]
        view.status = shown
        res.result[key] = view
        event = RDS_DONE_EVENTS[(key, target)]
        if secs > 0:
            real.status = shown
            real._emu_transition = {"target": target, "until": time.time() + secs, "event": event}
        elif n > 0:
            real.status = shown
            real._emu_transition = {"target": target, "left": n, "event": event}
        else:
            record_rds_event(real, event, time.time())

    return fn


def _db(h):
    return h.backend.databases[h._get_param("DBInstanceIdentifier")]


def _cl(h):
    return h.backend.clusters[h._get_param("DBClusterIdentifier")]


_after(RDSResponse, "stop_db_instance", _transition("DBInstance", _db, "stopping", "stopped"))
_after(RDSResponse, "start_db_instance", _transition("DBInstance", _db, "starting", "available"))
_after(RDSResponse, "stop_db_cluster", _transition("DBCluster", _cl, "stopping", "stopped"))
_after(RDSResponse, "start_db_cluster", _transition("DBCluster", _cl, "starting", "available"))

def seed_rds_events(body: dict):
    """POST /_test/rds/events: past events of an existing DB instance (`dbInstanceIdentifier`) or cluster
    (`dbClusterIdentifier`), each `{"message", "secondsAgo"}`: a history DescribeEvents returns."""
    region = body.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    backend = rds_models.rds_backends[body.get("account", DEFAULT_ACCOUNT)][region]
    if body.get("dbClusterIdentifier"):
        obj = backend.clusters.get(body["dbClusterIdentifier"])
    else:
        obj = backend.databases.get(body.get("dbInstanceIdentifier", ""))
    if obj is None:
        return 404, {"error": "no such DB instance or cluster"}
    now_s = time.time()
    for e in body.get("events", []):
        record_rds_event(obj, str(e["message"]), now_s - float(e["secondsAgo"]))
    return 200, {"events": len(body.get("events", []))}


# Creation/restore that takes a while, renames, modifications refused while busy: emulator/rds_lifecycle.py.
rds_lifecycle.install(RDSResponse, rds_models, lambda: S.instance_rule)


# =============================================================================
# CloudWatch: smithy rpc-v2-cbor <-> awsJson1.0 translation, metric seeding
# =============================================================================

def cbor_decode(data: bytes) -> Any:
    """Generic CBOR -> JSON-able value (tag 1 -> epoch number, bytes -> base64)."""
    import base64
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        b = data[pos:pos + n]
        pos += n
        return b

    def arg(info: int) -> int | None:
        if info < 24:
            return info
        if info == 31:
            return None
        return int.from_bytes(take({24: 1, 25: 2, 26: 4, 27: 8}[info]), "big")

    def item() -> Any:
        ib = take(1)[0]
        major, info = ib >> 5, ib & 31
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info in (22, 23):
                return None
            if info == 25:
                return struct.unpack(">e", take(2))[0]
            if info == 26:
                return struct.unpack(">f", take(4))[0]
            if info == 27:
                return struct.unpack(">d", take(8))[0]
            if info == 31:
                return StopIteration
            raise ValueError(f"unsupported simple {info}")
        n = arg(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major in (2, 3):
            if n is None:
                parts = []
                while (p := item()) is not StopIteration:
                    parts.append(p)
                raw = b"".join(x if isinstance(x, bytes) else x.encode() for x in parts)
            else:
                raw = take(n)
            return base64.b64encode(raw).decode() if major == 2 else raw.decode("utf-8")
        if major == 4:
            out = []
            while n is None or len(out) < n:
                v = item()
                if v is StopIteration:
                    break
                out.append(v)
            return out
        if major == 5:
            m = {}
            while n is None or len(m) < n:
                k = item()
                if k is StopIteration:
                    break
                m[k] = item()
            return m
        if major == 6:
            return item()  # tag 1 (epoch seconds) stays a number, as awsJson expects
        raise ValueError(f"bad major type {major}")

    return item() if data else {}


def cbor_encode(value: Any, shape: Any) -> bytes:
    """JSON value -> CBOR, typed by the botocore output shape (timestamps as tag 1)."""
    import base64
    out = bytearray()

    def head(major: int, n: int) -> None:
        if n < 24:
            out.append(major << 5 | n)
        else:
            for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
                if n < 1 << (8 * size):
                    out.append(major << 5 | info)
                    out.extend(n.to_bytes(size, "big"))
                    return

    def text(s: str) -> None:
        b = s.encode("utf-8")
        head(3, len(b))
        out.extend(b)

    def enc(v: Any, sh: Any) -> None:
        tn = sh.type_name if sh is not None else None
        if v is None:
            out.append(0xF6)
        elif tn == "structure" or (tn is None and isinstance(v, dict)):
            members = getattr(sh, "members", {}) if sh is not None else {}
            items = [(k, x) for k, x in v.items() if x is not None]
            head(5, len(items))
            for k, x in items:
                text(k)
                enc(x, members.get(k))
        elif tn == "map":
            head(5, len(v))
            for k, x in v.items():
                text(k)
                enc(x, sh.value)
        elif tn == "list" or isinstance(v, list):
            head(4, len(v))
            for x in v:
                enc(x, getattr(sh, "member", None))
        elif tn == "timestamp":
            if isinstance(v, str):
                from botocore.utils import parse_timestamp
                v = parse_timestamp(v).timestamp()
            out.append(0xC1)
            out.append(0xFB)
            out.extend(struct.pack(">d", float(v)))
        elif tn == "blob":
            b = base64.b64decode(v)
            head(2, len(b))
            out.extend(b)
        elif isinstance(v, bool) or tn == "boolean":
            out.append(0xF5 if v else 0xF4)
        elif tn in ("double", "float") or (tn is None and isinstance(v, float)):
            out.append(0xFB)
            out.extend(struct.pack(">d", float(v)))
        elif tn in ("integer", "long") or isinstance(v, int):
            v = int(v)
            head(0, v) if v >= 0 else head(1, -1 - v)
        else:
            text(str(v))

    enc(value, shape)
    return bytes(out)


_service_models: dict[str, Any] = {}


def service_model(name: str):
    if name not in _service_models:
        import botocore.session
        _service_models[name] = botocore.session.get_session().get_service_model(name)
    return _service_models[name]


CBOR_PATH = re.compile(r"^/service/([^/]+)/operation/([^/]+)$")


_orig_daterange = cw_models.daterange


def _aligned_daterange(start, stop, step, inclusive=False):
    """GetMetricStatistics buckets start on period boundaries (AWS), not at the first datapoint (moto)."""
    p = int(step.total_seconds()) or 1
    floor = start - timedelta(seconds=calendar.timegm(start.timetuple()) % p, microseconds=start.microsecond)
    return _orig_daterange(floor, stop, step, inclusive)


cw_models.daterange = _aligned_daterange  # used only by get_metric_statistics


def seed_metric(body: dict) -> dict:
    region = body.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    backend = cloudwatch_backends[body.get("account", DEFAULT_ACCOUNT)][region]
    dims = [{"Name": k, "Value": str(v)} for k, v in (body.get("dimensions") or {}).items()]
    data = []
    for v in body.get("values", []):
        # naive UTC, like moto's own request parser produces
        when = datetime.fromtimestamp(now() - float(v.get("secondsAgo", 0)), tz=timezone.utc).replace(tzinfo=None)
        data.append({"MetricName": body["metric"], "Dimensions": dims, "Value": float(v["value"]),
                     "Timestamp": when, "Unit": body.get("unit")})
    backend.put_metric_data(body["namespace"], data)
    return {"region": region, "count": len(data)}


def seed_images(body: dict) -> dict:
    """Pushes images (a manifest per tag) into an ECR repository, creating it if needed: what a CI build would push."""
    from moto.ecr.models import ecr_backends
    region = body.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    backend = ecr_backends[body.get("account", DEFAULT_ACCOUNT)][region]
    repo = body["repository"]
    if repo not in backend.repositories:
        backend.create_repository(repo, None, {}, {}, "MUTABLE", [])
    pushed = 0
    for tag in body.get("tags", []):
        digest = hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                          "size": 1, "digest": f"sha256:{digest}"}, "layers": []})
        try:
            backend.put_image(repo, manifest, tag)
        except Exception as e:  # the same tag pushed again (a second seed of the same repository): already there
            if type(e).__name__ != "ImageAlreadyExistsException":
                raise
            continue
        pushed += 1
    return {"region": region, "repository": repo, "pushed": pushed}


# =============================================================================
# Request identification, AWS-shaped errors, faults, call log
# =============================================================================
TARGET_SERVICES = {
    "AmazonEC2ContainerServiceV20141113": "ecs", "Logs_20140328": "logs", "AmazonSSM": "ssm",
    "GraniteServiceVersion20100801": "cloudwatch",
    "AmazonEC2ContainerRegistry_V20150921": "ecr", "AnyScaleFrontendService": "application-autoscaling",
}
VERSION_SERVICES = {"2014-10-31": "rds", "2015-12-01": "elbv2", "2010-08-01": "cloudwatch",
                    "2016-11-15": "ec2", "2011-06-15": "sts"}
SCOPE_SERVICES = {"monitoring": "cloudwatch", "elasticloadbalancing": "elbv2"}
ERROR_CODES = {  # kind -> (status, json code, query code)
    "throttle": (400, "ThrottlingException", "Throttling"),
    "500": (500, "InternalFailure", "InternalFailure"),
    "503": (503, "ServiceUnavailable", "ServiceUnavailable"),
    # IAM refusing the call: JSON services answer 400 AccessDeniedException, query services 403 AccessDenied.
    "denied": (400, "AccessDeniedException", "AccessDenied"),
}


class Req:
    """What the emulator needs to know about one AWS request."""

    def __init__(self, environ: dict, body: bytes):
        self.t = now()
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        self.content_type = environ.get("CONTENT_TYPE", "")
        path = environ.get("PATH_INFO", "")
        target = headers.get("x-amz-target", "")
        form: dict = {}
        if self.content_type.startswith("application/x-www-form-urlencoded"):
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        if not form:
            form = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
        scope_service = self.region = None
        m = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/", headers.get("authorization", ""))
        if m:
            self.region, scope_service = m.group(1), m.group(2)
        cm = CBOR_PATH.match(path)
        self.cbor = bool(cm) and ("cbor" in self.content_type or headers.get("smithy-protocol") == "rpc-v2-cbor")
        if target:
            self.protocol, prefix, self.operation = "json", *target.rsplit(".", 1)
        elif self.cbor:
            self.protocol, prefix, self.operation = "cbor", cm.group(1), cm.group(2)
        else:
            self.protocol, prefix, self.operation = "query", "", form.get("Action")
        service = SCOPE_SERVICES.get(scope_service, scope_service) if scope_service else None
        if service == "elbv2" and form.get("Version") not in (None, "2015-12-01"):
            service = "elb"
        self.service = service or TARGET_SERVICES.get(prefix) or VERSION_SERVICES.get(form.get("Version"))
        if self.protocol == "query" and self.service == "ec2":
            self.protocol = "ec2"

    def error(self, status: int, code: str, message: str, query_code: str | None = None) -> tuple:
        rid = str(uuid.uuid4())
        if self.protocol == "json":
            ct = self.content_type if "amz-json" in self.content_type else "application/x-amz-json-1.1"
            body = json.dumps({"__type": code, "message": message}).encode()
            return status, [("Content-Type", ct), ("x-amzn-ErrorType", code), ("x-amzn-RequestId", rid)], body
        if self.protocol == "cbor":
            body = cbor_encode({"__type": code, "message": message}, None)
            fault = "Sender" if status < 500 else "Receiver"
            return status, [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"),
                            ("x-amzn-query-error", f"{query_code or code};{fault}"),
                            ("x-amzn-RequestId", rid)], body
        code = query_code or code
        msg = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if self.protocol == "ec2":
            code = "RequestLimitExceeded" if code == "Throttling" else code
            body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>"
                    f"<Message>{msg}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>")
        else:
            typ = "Sender" if status < 500 else "Receiver"
            body = (f"<ErrorResponse><Error><Type>{typ}</Type><Code>{code}</Code><Message>{msg}</Message>"
                    f"</Error><RequestId>{rid}</RequestId></ErrorResponse>")
        return status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], body.encode()


def take_fault(req: Req) -> dict | None:
    for f in S.faults:
        if f.get("operation") not in (None, "*", req.operation):
            continue
        if f.get("service") not in (None, "*", req.service):
            continue
        if f["_skipped"] < int(f.get("after", 0) or 0):
            f["_skipped"] += 1
            continue
        if f["_left"] == 0:
            continue
        if f["_left"] > 0:
            f["_left"] -= 1
        f["_hits"] += 1
        return f
    return None


def record(req: Req, status: int | None, fault: str | None) -> None:
    with LOCK:
        S.seq += 1
        S.calls.append({"seq": S.seq, "t": req.t, "service": req.service, "operation": req.operation,
                        "region": req.region, "status": status, "fault": fault})


# =============================================================================
# Control API (/_test/*)
# =============================================================================

# lru_caches on moto model methods (e.g. Subnet._base_avail_ip_iterator) keep every reset
# backend alive (~4 MB per reset); found once after warm-up, cleared on every reset.
METHOD_CACHES: list = []


def reset_all() -> None:
    moto_api_backend.reset()
    for cache in METHOD_CACHES:
        cache.cache_clear()
    state_manager._transitions.clear()
    _last_ts.clear()
    S.__init__()


def control(method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
    route = (method, path)
    if route == ("GET", "/_test/health"):
        return 200, {"status": "ok"}
    if route == ("POST", "/_test/reset"):
        reset_all()
        return 200, {"status": "ok"}
    if path == "/_test/ecs/service-rules" or path == "/_test/ecs/task-rules":
        rules = S.service_rules if "service" in path else S.task_rules
        if method == "POST":
            if "service" in path and not body.get("service"):
                return 400, {"error": "service is required ('*' for all)"}
            return 200, public(add_rule(rules, body))
        if method == "DELETE":
            rules.clear()
        return 200, [public(r) for r in rules]
    if route == ("GET", "/_test/strict"):
        return 200, strict.status()
    if route == ("GET", "/_test/ecs/rollouts"):
        return 200, S.rollouts
    if route == ("GET", "/_test/ecs/tasks"):
        return 200, [task_view(x) for x in S.tasks.values()]
    if route == ("POST", "/_test/ecs/task-exit"):
        ref = body.get("task", "")
        task = next((x for arn, x in S.tasks.items() if arn == ref or arn.split("/")[-1] == ref.split("/")[-1]), None)
        if task is None:
            return 404, {"error": f"unknown task {ref}"}
        t = now()
        if task._emu_status == "PROVISIONING" and body.get("stopCode") != "TaskFailedToStart":
            start_task_running(task, t)
        stop_task_now(task, t, int(body.get("exitCode", 0)), body.get("stopCode", "EssentialContainerExited"),
                      body.get("stoppedReason", "Essential container in task exited"))
        return 200, task_view(task)
    if path == "/_test/rds/snapshot-rules" and method == "POST":
        S.snapshot_rule = dict(body)
        return 200, S.snapshot_rule
    if route == ("POST", "/_test/rds/events"):
        return seed_rds_events(body)
    if path == "/_test/rds/instance-rules" and method == "POST":
        S.instance_rule = dict(body)
        return 200, S.instance_rule
    if route == ("POST", "/_test/cloudwatch/metric"):
        return 200, seed_metric(body)
    if route == ("POST", "/_test/ecr/images"):
        if not body.get("repository"):
            return 400, {"error": "repository is required"}
        return 200, seed_images(body)
    if path == "/_test/faults":
        if method == "POST":
            if body.get("kind") not in ("throttle", "500", "503", "denied", "latency", "reset"):
                return 400, {"error": "kind must be throttle, 500, 503, denied, latency or reset"}
            f = dict(body, _skipped=0, _hits=0)
            f["_left"] = int(body.get("count", 1))
            S.faults.append(f)
            return 200, public(f)
        if method == "DELETE":
            S.faults.clear()
        return 200, [dict(public(f), hits=f["_hits"]) for f in S.faults]
    if path == "/_test/calls":
        if method == "DELETE":
            S.calls.clear()
            return 200, []
        since = int(query.get("since", 0) or 0)
        return 200, [c for c in S.calls if c["seq"] > since]
    return 404, {"error": f"no control endpoint {method} {path}"}


def seed_here(environ: dict, body: dict) -> tuple[int, Any]:
    """POST /_test/seed {"args": [seed.py's flags]}: emulator/seed.py run in this process against this server (no
    Python start-up per seed); answers {"config": TOML, "summary": one line}."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import seed  # noqa: PLC0415 - emulator/seed.py, imported on first use
    try:
        args = seed.parser().parse_args([str(a) for a in body.get("args", [])])
    except SystemExit:
        return 400, {"error": f"bad seed.py arguments {body.get('args')} (the reason is on stderr)"}
    args.endpoint = f"http://{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
    text, summary = seed.seed(args)
    return 200, {"config": text, "summary": summary}


# =============================================================================
# WSGI middleware around moto's DomainDispatcherApplication
# =============================================================================

def _create_app(service: str):
    app = create_backend_app(service)
    app.config["PROPAGATE_EXCEPTIONS"] = True  # crashes reach us, not Flask's HTML page
    return app


class Emulator:
    def __init__(self) -> None:
        self.moto = DomainDispatcherApplication(_create_app)

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO", "")
        body = self._read_body(environ)
        if path.startswith("/_test/"):
            status, payload = self._control(environ, path, body)
            return self._respond(start_response, status, [("Content-Type", "application/json")],
                                 json.dumps(payload, default=str).encode())
        if path.startswith("/moto-api"):
            with LOCK:
                status, headers, out = self._call_moto(environ)
                if path == "/moto-api/reset":
                    S.pending.clear()
                    S.tasks.clear()
            return self._respond(start_response, status, headers, out)
        req = Req(environ, body)
        with LOCK:
            fault = take_fault(req)
        kind = fault and fault.get("kind")
        if kind == "latency":
            time.sleep(float(fault.get("latencyMs", 1000)) / 1000.0)
        elif kind == "reset":
            record(req, None, "reset")
            return self._reset_connection(environ)
        elif kind in ERROR_CODES:
            status, code, qcode = ERROR_CODES[kind]
            message = "Rate exceeded" if kind == "throttle" else f"injected {kind}"
            if kind == "denied":
                status = 400 if req.protocol in ("json", "cbor") else 403
                message = (f"User: arn:aws:sts::{DEFAULT_ACCOUNT}:assumed-role/deploy/test is not authorized to "
                           f"perform: {req.service}:{req.operation} because no identity-based policy allows the "
                           f"{req.service}:{req.operation} action")
            resp = req.error(status, code, message, qcode)
            record(req, status, kind)
            return self._respond(start_response, *resp)
        with LOCK:
            refused = strict.refusal(req, body, DEFAULT_ACCOUNT, cbor_decode)
        if refused is not None:
            resp = req.error(refused.status, refused.code, refused.message, refused.query_code)
            if refused.query_code and req.protocol == "json":  # awsQueryCompatible over JSON (CloudWatch)
                resp[1].append(("x-amzn-query-error", f"{refused.query_code};Sender"))
            record(req, resp[0], None)
            return self._respond(start_response, *resp)
        try:
            if req.cbor:
                resp = self._call_cbor(environ, req, body)
            else:
                with LOCK:
                    resp = self._call_moto(environ)
                if resp[0] >= 400 and self._header(resp[1], "content-type").startswith("text/html"):
                    status = resp[0]
                    code = "InternalFailure" if status >= 500 else (
                        "UnknownOperationException" if status in (404, 405) else "BadRequest")
                    resp = req.error(status, code, f"moto answered HTTP {status} for {req.operation}")
        except Exception as e:  # noqa: BLE001 - any moto crash becomes an AWS-shaped 500
            traceback.print_exc(file=sys.stderr)
            resp = req.error(500, "InternalFailure", f"{type(e).__name__}: {e}")
        record(req, resp[0], kind or None)
        return self._respond(start_response, *resp)

    # ---- helpers
    @staticmethod
    def _read_body(environ: dict) -> bytes:
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated") or environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # already de-chunked by the server
        return body

    @staticmethod
    def _header(headers, name: str) -> str:
        return next((v for k, v in headers if k.lower() == name), "")

    def _call_moto(self, environ: dict) -> tuple[int, list, bytes]:
        captured: dict = {}
        chunks: list[bytes] = []

        def sr(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        it = self.moto(environ, sr)
        try:
            for c in it:
                chunks.append(c)
        finally:
            if hasattr(it, "close"):
                it.close()
        return int(captured["status"].split()[0]), list(captured["headers"]), b"".join(chunks)

    def _call_cbor(self, environ: dict, req: Req, body: bytes) -> tuple:
        """rpc-v2-cbor request -> moto's awsJson1.0 -> CBOR response."""
        prefix = CBOR_PATH.match(environ["PATH_INFO"]).group(1)
        payload = json.dumps(cbor_decode(body)).encode()
        environ.update({"PATH_INFO": "/", "RAW_URI": "/", "REQUEST_URI": "/",
                        "CONTENT_TYPE": "application/x-amz-json-1.0", "HTTP_X_AMZ_TARGET": f"{prefix}.{req.operation}",
                        "CONTENT_LENGTH": str(len(payload)), "wsgi.input": io.BytesIO(payload)})
        with LOCK:
            status, headers, out = self._call_moto(environ)
        try:
            doc = json.loads(out or b"{}")
        except ValueError:
            doc = {"__type": "InternalFailure", "message": out.decode("utf-8", "replace")[:200]}
        if status >= 400:
            code = str(doc.get("__type", "InternalFailure")).split("#")[-1]
            query_code = self._header(headers, "x-amzn-query-error").split(";")[0] or None
            return req.error(status, code, doc.get("message") or doc.get("Message") or "", query_code)
        op = service_model(req.service or "cloudwatch").operation_model(req.operation)
        rid = self._header(headers, "x-amzn-requestid") or str(uuid.uuid4())
        return status, [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"),
                        ("x-amzn-RequestId", rid)], cbor_encode(doc, op.output_shape)

    def _control(self, environ: dict, path: str, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body) if body.strip() else {}
            query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
            if (environ["REQUEST_METHOD"], path.rstrip("/")) == ("POST", "/_test/seed"):
                return seed_here(environ, data)  # not under LOCK: the seed calls this server
            with LOCK:
                return control(environ["REQUEST_METHOD"], path.rstrip("/"), query, data)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            return 500, {"error": f"{type(e).__name__}: {e}"}

    @staticmethod
    def _respond(start_response, status: int, headers: list, body: bytes):
        from http import HTTPStatus
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "transfer-encoding")]
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {phrase}", headers)
        return [body]

    @staticmethod
    def _reset_connection(environ: dict):
        """Abort the TCP connection: the client sees a reset/EOF and no HTTP response."""
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise ConnectionResetError("fault injected: connection reset")


# =============================================================================
# Background ticker: time-based roll-outs, tasks and generated log lines
# =============================================================================



def tick(t: float) -> bool:
    """Advances what runs on the clock; True while something timed is still in flight."""
    busy = False
    for ro in list(S.pending):
        if ro.after_seconds is not None and ro in S.pending:
            settle_check(ro, t, describe=False)
            busy = busy or ro in S.pending
    for task in list(S.tasks.values()):
        sim = getattr(task, "_emu", None)
        if sim and not sim["done"] and sim["run_secs"] is not None:
            task_step(task, t, describe=False)
            busy = busy or not sim["done"]
    return busy


def ticker(stop: threading.Event) -> None:
    while not stop.is_set():
        busy = True
        with LOCK:
            WAKE.clear()  # under the lock: whatever sets it later (also under the lock) is seen by this tick or the next
            try:
                busy = tick(now())
            except Exception:  # noqa: BLE001 - keep ticking; a bad rule must not kill the server
                traceback.print_exc(file=sys.stderr)
        if busy:
            stop.wait(0.02)
        else:
            WAKE.wait(0.5)  # bounded, so that a stop is still seen


# =============================================================================
# Server
# =============================================================================

def warm_up(app: Emulator) -> None:
    """Import and build every backend we use, so a test's first call is fast; then reset."""
    from werkzeug.test import Client
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    auth = ("AWS4-HMAC-SHA256 Credential=AKIAWARMUP/20260101/{r}/{s}/aws4_request, "
            "SignedHeaders=host, Signature=0")
    client = Client(app)
    json_calls = [("ecs", "AmazonEC2ContainerServiceV20141113.ListClusters", "{}"),
                  ("logs", "Logs_20140328.DescribeLogGroups", "{}"), ("ssm", "AmazonSSM.DescribeParameters", "{}"),
                  ("ecr", "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories", "{}"),
                  ("application-autoscaling", "AnyScaleFrontendService.DescribeScalableTargets",
                   '{"ServiceNamespace": "ecs"}')]
    for svc, target, body in json_calls:
        client.post("/", data=body, headers={"Authorization": auth.format(r=region, s=svc),
                                              "X-Amz-Target": target,
                                              "Content-Type": "application/x-amz-json-1.1"})
    query_calls = [("rds", "DescribeDBInstances", "2014-10-31"), ("ec2", "DescribeVpcs", "2016-11-15"),
                   ("elasticloadbalancing", "DescribeLoadBalancers", "2015-12-01"),
                   ("monitoring", "ListMetrics", "2010-08-01"), ("sts", "GetCallerIdentity", "2011-06-15")]
    for svc, action, version in query_calls:
        client.post("/", data=f"Action={action}&Version={version}",
                    headers={"Authorization": auth.format(r=region, s=svc),
                             "Content-Type": "application/x-www-form-urlencoded"})
    service_model("cloudwatch")
    METHOD_CACHES.extend(o for o in gc.get_objects() if isinstance(o, functools._lru_cache_wrapper)
                         and (getattr(o, "__module__", None) or "").startswith("moto") and "." in o.__qualname__)
    with LOCK:
        reset_all()
    # Keep the (large, immortal) imported module state out of the cyclic GC's scans: a full
    # collection then costs a few ms instead of ~250 ms in the middle of a reset or a call.
    gc.collect()
    gc.freeze()


def serve(args: argparse.Namespace, app: Emulator, parent_fd: int | None = None) -> None:
    """Serves on `args.host:args.port` (0: a free port), prints the one stdout line `LOCAL_AWS_READY <url>`, and runs
    until SIGTERM/SIGINT, the end of stdin (`--exit-on-stdin-eof`), or the end of `parent_fd` (a fork-server child:
    its parent exited)."""

    class Handler(MotoRequestHandler):
        def log_request(self, code="-", size="-"):
            if args.verbose:
                super().log_request(code, size)

    server = make_server(args.host, args.port, app, threaded=True, request_handler=Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    stop = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=ticker, args=(stop,), daemon=True).start()
    url = f"http://{args.host}:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(200):
        try:
            opener.open(f"{url}/_test/health", timeout=1).read()
            break
        except OSError:
            time.sleep(0.02)
    print(f"LOCAL_AWS_READY {url}", flush=True)
    # Exactly one line on stdout: anything printed later (moto has stray prints) goes to stderr,
    # so a harness that stops reading stdout can never block us on a full pipe.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if parent_fd is not None:
        threading.Thread(target=lambda: (os.read(parent_fd, 1), stop.set()), daemon=True).start()
    elif args.exit_on_stdin_eof:
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()), daemon=True).start()
    while not stop.wait(0.5):
        pass
    server.shutdown()


def fork_server(args: argparse.Namespace, app: Emulator) -> None:
    """`--fork-server`: this process, warmed up once (imports, models, backends: about 3 s of CPU), serves nothing
    itself; each line read on stdin forks one emulator of its own state on a free port, which prints its
    `LOCAL_AWS_READY <url>` line (or `LOCAL_AWS_FAILED <reason>`) on the shared stdout. A harness that needs a dozen
    emulators pays the start-up once. When stdin closes (the harness exited, however) this process exits and every
    emulator it forked follows: each holds the read end of a pipe only this process can write to."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import seed  # noqa: PLC0415 - what POST /_test/seed runs: its import and models, once for every fork
    seed.warm()
    gc.collect()
    gc.freeze()
    alive_r, alive_w = os.pipe()
    for _ in iter(sys.stdin.buffer.readline, b""):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(alive_w)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, sys.stdin.fileno())  # the next line on stdin is the parent's, not ours
                random.seed()  # not the same deployment ids as every sibling
                serve(args, app, parent_fd=alive_r)
            except BaseException as e:  # noqa: BLE001 - the harness must hear about it, not wait forever
                print(f"LOCAL_AWS_FAILED {type(e).__name__}: {e}", flush=True)
                traceback.print_exc(file=sys.stderr)
                os._exit(1)
            os._exit(0)
        while True:  # reap siblings that ended, so none is left a zombie
            try:
                done, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if done == 0:
                break
    os.close(alive_w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="stop when stdin closes (a test harness that dies takes the emulator with it)")
    ap.add_argument("--fork-server", action="store_true",
                    help="warm up once, then fork one emulator (free port, own state) per line read on stdin; all "
                         "of them stop when stdin closes (for test harnesses that need many)")
    ap.add_argument("--no-strict", action="store_true",
                    help="lenient (stock moto) validation, for a one-off comparison; never in tests")
    args = ap.parse_args()
    strict.ENABLED = not args.no_strict
    strict.install()
    strict.warm()

    app = Emulator()
    warm_up(app)
    if args.fork_server:
        if args.port != 0:
            ap.error("--fork-server needs --port 0 (each emulator takes a free port)")
        fork_server(args, app)
    else:
        serve(args, app)
    sys.exit(0)


if __name__ == "__main__":
    main()
