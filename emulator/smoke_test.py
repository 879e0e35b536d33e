#!/usr/bin/env python3
"""Smoke test for emulator/local_aws.py: every /_test control, through boto3 and raw HTTP.

    scripts/local-aws-setup --dev && .venv/bin/python emulator/smoke_test.py

Starts its own emulator on a free port (or uses $LOCAL_AWS_URL if set), runs the checks
serially with /_test/reset between groups, and ends with the line 'N passed, N failed'.
Needs boto3 (emulator/requirements-dev.txt).
"""
from __future__ import annotations

import concurrent.futures
import datetime as dtm
import json
import os
import subprocess
import sys
import time
import traceback
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.parsers
import botocore.serialize
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

REGION = "eu-central-1"
HERE = os.path.dirname(os.path.abspath(__file__))
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
URL = ""
CHECKS: list = []


def check(fn):
    CHECKS.append(fn)
    return fn


def ctl(method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with OPENER.open(req, timeout=10) as r:
        return json.loads(r.read())


def client(name: str, retries: int = 1):
    return boto3.client(name, endpoint_url=URL, region_name=REGION, aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"total_max_attempts": retries,
                                                                             "mode": "standard"}))


def eq(a, b, what=""):
    assert a == b, f"{what}: expected {b!r}, got {a!r}"


# ----------------------------------------------------------------------------- fixtures
LOGCONF = {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web", "awslogs-region": REGION,
                                               "awslogs-stream-prefix": "ecs"}}


def ecs_fixture(revisions: int = 3):
    ecs, ec2 = client("ecs"), client("ec2")
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    ecs.create_cluster(clusterName="prod")
    for _ in range(revisions):
        ecs.register_task_definition(
            family="web", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
            containerDefinitions=[
                {"name": "app", "image": "app:1", "essential": True, "logConfiguration": LOGCONF},  # no memory
                {"name": "sidecar", "image": "side:1", "memory": 64, "essential": False},
            ])
    net = {"awsvpcConfiguration": {"subnets": [subnet]}}  # no securityGroups: moto used to crash
    return ecs, net


def describe(ecs, name="web"):
    return ecs.describe_services(cluster="prod", services=[name])["services"][0]


def run(ecs, net, **kw):
    return ecs.run_task(cluster="prod", taskDefinition="web", launchType="FARGATE",
                        networkConfiguration=net, **kw)["tasks"][0]


def task(ecs, arn):
    return ecs.describe_tasks(cluster="prod", tasks=[arn])["tasks"][0]


def stream_lines(task_arn: str, container="app"):
    logs = client("logs")
    stream = f"ecs/{container}/{task_arn.split('/')[-1]}"
    events = logs.get_log_events(logGroupName="/ecs/web", logStreamName=stream, startFromHead=True)["events"]
    return [e["message"] for e in events]


# ----------------------------------------------------------------------------- ECS services
@check
def ecs_create_service_settles_after_one_describe():
    ecs, net = ecs_fixture()
    conf = {"maximumPercent": 200, "minimumHealthyPercent": 50,
            "deploymentCircuitBreaker": {"enable": True, "rollback": False}}
    svc = ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:1", desiredCount=2,
                             launchType="FARGATE", networkConfiguration=net,
                             deploymentConfiguration=conf)["service"]
    eq(svc["deploymentConfiguration"], conf, "deploymentConfiguration echoed")
    eq((svc["runningCount"], svc["pendingCount"]), (0, 2), "create counts")
    first = describe(ecs)
    eq(first["deployments"][0]["rolloutState"], "IN_PROGRESS", "1st describe")
    second = describe(ecs)
    d = second["deployments"]
    eq((len(d), d[0]["rolloutState"], d[0]["runningCount"], d[0]["pendingCount"]), (1, "COMPLETED", 2, 0), "2nd")
    eq(second["runningCount"], 2, "service running")
    eq(second["events"][0]["message"], "(service web) has reached a steady state.", "newest event first")
    assert "deployment completed." in second["events"][1]["message"]
    assert second["events"][2]["message"].startswith("(service web) has started 2 tasks: (task ")
    eq(len(ecs.list_tasks(cluster="prod", serviceName="web")["taskArns"]), 2, "service tasks")
    eq(describe(ecs)["deploymentConfiguration"], conf, "stored")


@check
def ecs_update_service_rolls_primary_and_active():
    ecs, net = ecs_fixture()
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:1", desiredCount=2,
                       launchType="FARGATE", networkConfiguration=net)
    describe(ecs), describe(ecs)
    svc = ecs.update_service(cluster="prod", service="web", taskDefinition="web:2")["service"]
    arn2 = svc["taskDefinition"]
    assert arn2.startswith("arn:aws:ecs:") and arn2.endswith("task-definition/web:2"), arn2
    d = describe(ecs)
    eq([(x["status"], x["rolloutState"]) for x in d["deployments"]],
       [("PRIMARY", "IN_PROGRESS"), ("ACTIVE", "COMPLETED")], "rolling")
    p = d["deployments"][0]
    assert p["id"].startswith("ecs-svc/") and p["id"][8:].isdigit()
    eq((p["taskDefinition"], p["runningCount"], p["pendingCount"], p["failedTasks"]), (arn2, 0, 2, 0), "primary")
    eq(d["runningCount"], 2, "old tasks still counted while rolling")
    d = describe(ecs)
    eq([(x["status"], x["rolloutState"]) for x in d["deployments"]], [("PRIMARY", "COMPLETED")], "settled")
    tasks = ecs.describe_tasks(cluster="prod", tasks=ecs.list_tasks(cluster="prod", serviceName="web")["taskArns"])
    eq({t["taskDefinitionArn"] for t in tasks["tasks"]}, {arn2}, "service tasks on the new revision")
    eq({t["group"] for t in tasks["tasks"]}, {"service:web"}, "group")
    stopped = ecs.list_tasks(cluster="prod", serviceName="web", desiredStatus="STOPPED")["taskArns"]
    eq(len(stopped), 2, "old tasks stopped")
    rollouts = ctl("GET", "/_test/ecs/rollouts")
    eq([(r["outcome"], r["taskDefinition"]) for r in rollouts][-1], ("COMPLETED", arn2), "rollouts")
    assert all(r["settledAt"] >= r["startedAt"] for r in rollouts)


@check
def ecs_failed_rollout_with_stopped_tasks_and_logs():
    ecs, net = ecs_fixture()
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:1", desiredCount=2,
                       launchType="FARGATE", networkConfiguration=net)
    describe(ecs), describe(ecs)
    ctl("POST", "/_test/ecs/service-rules", {"service": "web", "outcome": "FAILED", "failedTasks": 2, "times": 1,
                                            "taskExitCode": 3, "taskLogs": ["starting", "FATAL: no db"],
                                            "taskStopCode": "EssentialContainerExited"})
    ecs.update_service(cluster="prod", service="web", taskDefinition="web:3")
    eq(describe(ecs)["deployments"][0]["rolloutState"], "IN_PROGRESS", "1st")
    d = describe(ecs)
    p = d["deployments"][0]
    eq((p["rolloutState"], p["failedTasks"]), ("FAILED", 2), "failed")
    eq(p["rolloutStateReason"], "ECS deployment circuit breaker: tasks failed to start.", "reason")
    eq(d["events"][0]["message"], f"(service web) (deployment {p['id']}) deployment failed: tasks failed to start.",
       "event")
    eq(d["deployments"][1]["status"], "ACTIVE", "old deployment still active")
    eq(d["runningCount"], 2, "old tasks still running")
    arns = ecs.list_tasks(cluster="prod", startedBy=p["id"], desiredStatus="STOPPED")["taskArns"]
    eq(len(arns), 2, "N stopped tasks")
    for t in ecs.describe_tasks(cluster="prod", tasks=arns)["tasks"]:
        eq((t["lastStatus"], t["stopCode"], t["group"], t["startedBy"]),
           ("STOPPED", "EssentialContainerExited", "service:web", p["id"]), "stopped task")
        eq(t["containers"][0]["exitCode"], 3, "exit code")
        eq(t["stoppedReason"], "Essential container in task exited", "stopped reason")
        eq(stream_lines(t["taskArn"]), ["starting", "FATAL: no db"], "failed task logs")
    # the rule had times=1: the client's own rollback completes by default
    ecs.update_service(cluster="prod", service="web", taskDefinition="web:1")
    describe(ecs)
    d = describe(ecs)
    eq([(x["status"], x["rolloutState"]) for x in d["deployments"]], [("PRIMARY", "COMPLETED")], "rolled back")
    eq(d["taskDefinition"].split("/")[-1], "web:1", "rolled back td")


@check
def ecs_settle_after_seconds_and_never():
    ecs, net = ecs_fixture()
    ctl("POST", "/_test/ecs/service-rules", {"service": "*", "settleAfterSeconds": 0.5})
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:1", desiredCount=1,
                       launchType="FARGATE", networkConfiguration=net)
    eq(describe(ecs)["deployments"][0]["rolloutState"], "IN_PROGRESS", "before")
    time.sleep(0.6)
    eq(describe(ecs)["deployments"][0]["rolloutState"], "COMPLETED", "after 0.5 s")
    r = ctl("GET", "/_test/ecs/rollouts")[-1]
    assert abs(r["settledAt"] - r["startedAt"] - 0.5) < 0.01, r
    ctl("POST", "/_test/ecs/service-rules", {"service": "web", "outcome": "NEVER"})
    ecs.update_service(cluster="prod", service="web", forceNewDeployment=True)
    for _ in range(5):
        eq(describe(ecs)["deployments"][0]["rolloutState"], "IN_PROGRESS", "never settles")
    eq(ctl("GET", "/_test/ecs/rollouts")[-1]["settledAt"], None, "no settledAt")
    eq(len(describe(ecs)["deployments"]), 2, "forceNewDeployment creates a deployment")


@check
def ecs_desired_count_only_converges_without_new_deployment():
    ecs, net = ecs_fixture()
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:1", desiredCount=2,
                       launchType="FARGATE", networkConfiguration=net)
    describe(ecs), describe(ecs)
    dep_id = describe(ecs)["deployments"][0]["id"]
    ecs.update_service(cluster="prod", service="web", desiredCount=3)
    d = describe(ecs)
    p = d["deployments"][0]
    eq((len(d["deployments"]), p["id"], p["desiredCount"], p["rolloutState"]), (1, dep_id, 3, "COMPLETED"), "scale")
    eq((d["runningCount"], d["desiredCount"]), (2, 3), "converging")
    d = describe(ecs)
    eq((d["runningCount"], d["pendingCount"], d["deployments"][0]["runningCount"]), (3, 0, 3), "converged")
    ecs.update_service(cluster="prod", service="web", desiredCount=0)
    describe(ecs)
    d = describe(ecs)
    eq((d["runningCount"], d["deployments"][0]["runningCount"]), (0, 0), "scaled to zero")
    eq(ecs.list_tasks(cluster="prod", serviceName="web")["taskArns"], [], "no running tasks")


@check
def ecs_describe_missing_service():
    ecs, _ = ecs_fixture(1)
    r = ecs.describe_services(cluster="prod", services=["nope"])
    eq(r["failures"][0]["reason"], "MISSING", "failure")
    assert r["failures"][0]["arn"].endswith("service/nope")


# ----------------------------------------------------------------------------- ECS tasks
@check
def ecs_run_task_default_lifecycle():
    ecs, net = ecs_fixture(1)
    t = run(ecs, net, startedBy="deploy-action", group="migrate", tags=[{"key": "k", "value": "v"}],
            overrides={"containerOverrides": [{"name": "app", "command": ["migrate"]}]})
    eq((t["lastStatus"], t["desiredStatus"]), ("PROVISIONING", "RUNNING"), "run_task")
    eq([c["name"] for c in t["containers"]], ["app", "sidecar"], "all containers")
    assert all(c["taskArn"] == t["taskArn"] and c["lastStatus"] == "PENDING" and "exitCode" not in c
               for c in t["containers"])
    eq((t["startedBy"], t["group"], t["tags"]), ("deploy-action", "migrate", [{"key": "k", "value": "v"}]), "echo")
    eq(t["overrides"]["containerOverrides"][0]["command"], ["migrate"], "overrides")
    assert isinstance(t["createdAt"], dtm.datetime)
    r = task(ecs, t["taskArn"])
    eq((r["lastStatus"], r["containers"][0]["lastStatus"]), ("RUNNING", "RUNNING"), "running")
    assert "startedAt" in r and "exitCode" not in r["containers"][0]
    r = task(ecs, t["taskArn"])
    eq((r["lastStatus"], r["desiredStatus"], r["stopCode"]), ("STOPPED", "STOPPED", "EssentialContainerExited"), "")
    eq([c["exitCode"] for c in r["containers"]], [0, 0], "exit codes")
    assert all(k in r for k in ("stoppedAt", "executionStoppedAt", "stoppingAt", "stoppedReason"))
    eq(ecs.list_tasks(cluster="prod", desiredStatus="STOPPED")["taskArns"], [t["taskArn"]], "listed as STOPPED")
    eq(ecs.list_tasks(cluster="prod")["taskArns"], [], "not listed as RUNNING")


@check
def ecs_task_rule_exit_code_and_logs():
    ecs, net = ecs_fixture(1)
    ctl("POST", "/_test/ecs/task-rules", {"match": "--fail-for-test", "exitCode": 1, "runningDescribes": 2,
                                         "logs": ["migrating...", "ERROR x"]})
    t = run(ecs, net, overrides={"containerOverrides": [{"name": "app", "command": ["migrate", "--fail-for-test"]}]})
    eq([task(ecs, t["taskArn"])["lastStatus"] for _ in range(3)], ["RUNNING", "RUNNING", "STOPPED"], "lifecycle")
    r = task(ecs, t["taskArn"])
    eq([c["exitCode"] for c in r["containers"]], [1, 0], "exit on the essential container only")
    eq(stream_lines(t["taskArn"]), ["migrating...", "ERROR x"], "awslogs stream")
    other = run(ecs, net)  # no match: default rule
    eq([task(ecs, other["taskArn"])["lastStatus"] for _ in range(2)], ["RUNNING", "STOPPED"], "default")


@check
def ecs_task_failed_to_start():
    ecs, net = ecs_fixture(1)
    ctl("POST", "/_test/ecs/task-rules", {"match": "web", "stopCode": "TaskFailedToStart", "times": 1})
    t = run(ecs, net)
    r = task(ecs, t["taskArn"])
    eq((r["lastStatus"], r["stopCode"]), ("STOPPED", "TaskFailedToStart"), "straight to STOPPED")
    assert r["stoppedReason"].startswith("CannotPullContainerError"), r["stoppedReason"]
    assert "startedAt" not in r and all("exitCode" not in c for c in r["containers"])
    eq(ctl("GET", "/_test/ecs/task-rules")[0]["remaining"], 0, "rule used up")


@check
def ecs_generate_lines_drained_before_stopped():
    ecs, net = ecs_fixture(1)
    ctl("POST", "/_test/ecs/task-rules", {"match": "web", "exitCode": 0,
                                         "generateLines": {"count": 40, "template": "line {i}", "overSeconds": 1.0}})
    t0 = time.time()  # before RunTask: the lines are spread from the moment the task is created
    t = run(ecs, net)
    seen_running_partial = False
    while True:
        r = task(ecs, t["taskArn"])
        n = len(stream_lines(t["taskArn"])) if r["lastStatus"] != "PROVISIONING" else 0
        if r["lastStatus"] == "STOPPED":
            break
        if 0 < n < 40:
            seen_running_partial = True
        assert time.time() - t0 < 5, "never stopped"
        time.sleep(0.1)
    assert time.time() - t0 >= 0.9, "stopped too early"
    assert seen_running_partial, "lines were not spread over time"
    lines = stream_lines(t["taskArn"])
    eq((len(lines), lines[0], lines[-1]), (40, "line 1", "line 40"), "all lines there after STOPPED")


@check
def ecs_never_stop_then_stop_task_and_task_exit():
    ecs, net = ecs_fixture(1)
    ctl("POST", "/_test/ecs/task-rules", {"match": "web", "neverStop": True})
    a, b = run(ecs, net), run(ecs, net)
    for _ in range(4):
        eq(task(ecs, a["taskArn"])["lastStatus"], "RUNNING", "never stops")
    s = ecs.stop_task(cluster="prod", task=a["taskArn"], reason="deploy cancelled")["task"]
    eq((s["lastStatus"], s["desiredStatus"], s["stopCode"], s["stoppedReason"]),
       ("STOPPED", "STOPPED", "UserInitiated", "deploy cancelled"), "stop_task")
    eq(s["containers"][0]["exitCode"], 137, "137")
    ctl("POST", "/_test/ecs/task-exit", {"task": b["taskArn"].split("/")[-1], "exitCode": 5})
    r = task(ecs, b["taskArn"])
    eq((r["lastStatus"], r["containers"][0]["exitCode"], r["stopCode"]), ("STOPPED", 5, "EssentialContainerExited"),
       "task-exit")
    listed = {x["taskArn"]: x for x in ctl("GET", "/_test/ecs/tasks")}
    eq(listed[b["taskArn"]]["exitCodes"]["app"], 5, "GET /_test/ecs/tasks")


@check
def ecs_describe_unknown_task_and_list_filters():
    ecs, net = ecs_fixture(1)
    t = run(ecs, net, startedBy="me")
    r = ecs.describe_tasks(cluster="prod", tasks=[t["taskArn"], "0123456789abcdef0123456789abcdef"])
    eq(len(r["tasks"]), 1, "found")
    eq(r["failures"][0]["reason"], "MISSING", "missing")
    eq(ecs.list_tasks(cluster="prod", startedBy="me")["taskArns"], [t["taskArn"]], "startedBy")
    eq(ecs.list_tasks(cluster="prod", family="web")["taskArns"], [t["taskArn"]], "family")
    eq(ecs.list_tasks(cluster="prod", launchType="EC2")["taskArns"], [], "launchType")
    eq(ecs.list_tasks(cluster="prod", launchType="FARGATE")["taskArns"], [t["taskArn"]], "launchType")


# ----------------------------------------------------------------------------- RDS
def rds_fixture():
    rds = client("rds")
    rds.create_db_instance(DBInstanceIdentifier="db1", DBInstanceClass="db.t3.micro", Engine="postgres",
                           MasterUsername="u", MasterUserPassword="password123", AllocatedStorage=20)
    rds.create_db_cluster(DBClusterIdentifier="cl1", Engine="aurora-postgresql", MasterUsername="u",
                          MasterUserPassword="password123")
    return rds


@check
def rds_snapshot_progress_tags_and_filters():
    rds = rds_fixture()
    ctl("POST", "/_test/rds/snapshot-rules", {"creatingDescribes": 2})
    s = rds.create_db_snapshot(DBInstanceIdentifier="db1", DBSnapshotIdentifier="pre-deploy-1",
                               Tags=[{"Key": "deploy-action", "Value": "v1"}])["DBSnapshot"]
    eq((s["Status"], s["PercentProgress"]), ("creating", 0), "create response")
    seen = []
    for _ in range(3):
        x = rds.describe_db_snapshots(DBSnapshotIdentifier="pre-deploy-1")["DBSnapshots"][0]
        seen.append((x["Status"], x["PercentProgress"]))
    eq(seen, [("creating", 33), ("creating", 66), ("available", 100)], "progress")
    assert isinstance(x["SnapshotCreateTime"], dtm.datetime)
    tags = rds.list_tags_for_resource(ResourceName=x["DBSnapshotArn"])["TagList"]
    eq(tags, [{"Key": "deploy-action", "Value": "v1"}], "tags")
    manual = rds.describe_db_snapshots(DBInstanceIdentifier="db1", SnapshotType="manual")["DBSnapshots"]
    eq([m["DBSnapshotIdentifier"] for m in manual], ["pre-deploy-1"], "manual filter hides automated")
    rds.delete_db_snapshot(DBSnapshotIdentifier="pre-deploy-1")
    eq(rds.describe_db_snapshots(DBInstanceIdentifier="db1", SnapshotType="manual")["DBSnapshots"], [], "deleted")
    c = rds.create_db_cluster_snapshot(DBClusterIdentifier="cl1", DBClusterSnapshotIdentifier="pre-c")
    eq(c["DBClusterSnapshot"]["Status"], "creating", "cluster snapshot")
    seen = [(x["Status"], x["PercentProgress"]) for x in (
        rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="pre-c")["DBClusterSnapshots"][0]
        for _ in range(3))]
    eq(seen, [("creating", 33), ("creating", 66), ("available", 100)], "cluster progress")
    ctl("POST", "/_test/rds/snapshot-rules", {"neverAvailable": True})
    rds.create_db_snapshot(DBInstanceIdentifier="db1", DBSnapshotIdentifier="stuck")
    for _ in range(5):
        eq(rds.describe_db_snapshots(DBSnapshotIdentifier="stuck")["DBSnapshots"][0]["Status"], "creating", "stuck")
    ctl("POST", "/_test/rds/snapshot-rules", {})
    s = rds.create_db_snapshot(DBInstanceIdentifier="db1", DBSnapshotIdentifier="quick")["DBSnapshot"]
    eq((s["Status"], s["PercentProgress"]), ("available", 100), "default: available at once")


@check
def rds_stop_start_transitions():
    rds = rds_fixture()
    rds.describe_db_clusters(DBClusterIdentifier="cl1")  # creating -> available
    eq(rds.stop_db_instance(DBInstanceIdentifier="db1")["DBInstance"]["DBInstanceStatus"], "stopping", "response")
    eq(rds.describe_db_instances(DBInstanceIdentifier="db1")["DBInstances"][0]["DBInstanceStatus"], "stopped", "N=0")
    eq(rds.stop_db_cluster(DBClusterIdentifier="cl1")["DBCluster"]["Status"], "stopping", "cluster response")
    eq(rds.describe_db_clusters(DBClusterIdentifier="cl1")["DBClusters"][0]["Status"], "stopped", "cluster N=0")
    ctl("POST", "/_test/rds/instance-rules", {"transitionDescribes": 2})
    eq(rds.start_db_instance(DBInstanceIdentifier="db1")["DBInstance"]["DBInstanceStatus"], "starting", "start")
    seen = [rds.describe_db_instances(DBInstanceIdentifier="db1")["DBInstances"][0]["DBInstanceStatus"]
            for _ in range(3)]
    eq(seen, ["starting", "starting", "available"], "instance transition")
    eq(rds.start_db_cluster(DBClusterIdentifier="cl1")["DBCluster"]["Status"], "starting", "cluster start")
    seen = [rds.describe_db_clusters(DBClusterIdentifier="cl1")["DBClusters"][0]["Status"] for _ in range(3)]
    eq(seen, ["starting", "starting", "available"], "cluster transition")


@check
def rds_start_stop_record_their_completion_events_and_can_take_seconds():
    rds = rds_fixture()
    rds.describe_db_clusters(DBClusterIdentifier="cl1")  # creating -> available

    def messages(**src):
        return [e["Message"] for e in rds.describe_events(**src, Duration=20160)["Events"]
                if "started" in e["Message"] or "stopped" in e["Message"]]

    db, cl = dict(SourceIdentifier="db1", SourceType="db-instance"), dict(SourceIdentifier="cl1", SourceType="db-cluster")
    rds.stop_db_instance(DBInstanceIdentifier="db1")
    eq(messages(**db), ["DB instance stopped"], "N=0: done at once, event recorded")
    ctl("POST", "/_test/rds/instance-rules", {"transitionSeconds": 0.6})
    t0 = time.time()
    rds.start_db_instance(DBInstanceIdentifier="db1")
    eq(rds.describe_db_instances(DBInstanceIdentifier="db1")["DBInstances"][0]["DBInstanceStatus"], "starting",
       "within the seconds")
    eq(messages(**db), ["DB instance stopped"], "no completion event before the end")
    time.sleep(0.7)
    eq(rds.describe_db_instances(DBInstanceIdentifier="db1")["DBInstances"][0]["DBInstanceStatus"], "available",
       "after the seconds")
    events = rds.describe_events(**db, Duration=20160)["Events"]
    started = [e for e in events if e["Message"] == "DB instance started"]
    eq(len(started), 1, "one start event")
    took = started[0]["Date"].timestamp() - t0
    assert 0.5 <= took <= 0.7, f"start event dated at the end of the transition, {took:.2f}s after the call"
    rds.stop_db_cluster(DBClusterIdentifier="cl1")
    time.sleep(0.7)
    rds.describe_db_clusters(DBClusterIdentifier="cl1")
    eq(messages(**cl), ["DB cluster stopped"], "cluster stop event")
    ctl("POST", "/_test/rds/events", {"dbClusterIdentifier": "cl1", "region": REGION, "events": [
        {"message": "DB cluster is being started due to it exceeding the maximum allowed time being stopped.",
         "secondsAgo": 100}, {"message": "DB cluster started", "secondsAgo": 90}]})
    eq(messages(**cl)[:2], ["DB cluster is being started due to it exceeding the maximum allowed time being stopped.",
                            "DB cluster started"], "seeded history, oldest first")


@check
def rds_describe_events_answers_its_time_window():
    rds = rds_fixture()
    db = dict(SourceIdentifier="db1", SourceType="db-instance")
    ctl("POST", "/_test/rds/events", {"dbInstanceIdentifier": "db1", "region": REGION, "events": [
        {"message": "two hours ago", "secondsAgo": 7200}, {"message": "ten minutes ago", "secondsAgo": 600}]})
    now = dtm.datetime.now(dtm.timezone.utc)

    def seen(**window):
        return [e["Message"] for e in rds.describe_events(**db, **window)["Events"] if "ago" in e["Message"]]

    eq(seen(), ["ten minutes ago"], "default: the last 60 minutes")
    eq(seen(Duration=180), ["two hours ago", "ten minutes ago"], "Duration in minutes")
    eq(seen(StartTime=now - dtm.timedelta(minutes=5), EndTime=now + dtm.timedelta(seconds=5)), [],
       "StartTime..EndTime: neither")
    eq(seen(StartTime=now - dtm.timedelta(minutes=15), EndTime=now), ["ten minutes ago"], "StartTime..EndTime")
    eq(seen(StartTime=now - dtm.timedelta(hours=3), EndTime=now - dtm.timedelta(hours=1)), ["two hours ago"],
       "a window in the past")


@check
def rds_restore_takes_describes_and_renames_move_the_endpoint():
    rds = rds_fixture()
    rds.create_db_snapshot(DBInstanceIdentifier="db1", DBSnapshotIdentifier="s1")
    ctl("POST", "/_test/rds/instance-rules", {"createDescribes": 2, "renameDescribes": 1})
    r = rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="db1-new", DBSnapshotIdentifier="s1",
                                                 DBInstanceClass="db.t3.micro")["DBInstance"]
    eq(r["DBInstanceStatus"], "creating", "restore response")
    seen = [rds.describe_db_instances(DBInstanceIdentifier="db1-new")["DBInstances"][0]["DBInstanceStatus"]
            for _ in range(3)]
    eq(seen, ["creating", "creating", "available"], "restore progress")
    before = rds.describe_db_instances(DBInstanceIdentifier="db1")["DBInstances"][0]["Endpoint"]["Address"]
    try:
        rds.modify_db_instance(DBInstanceIdentifier="db1", NewDBInstanceIdentifier="db1-new", ApplyImmediately=True)
        raise AssertionError("a taken name was accepted")
    except ClientError as e:
        eq(e.response["Error"]["Code"], "DBInstanceAlreadyExists", "taken name")
    m = rds.modify_db_instance(DBInstanceIdentifier="db1", NewDBInstanceIdentifier="db1-old",
                               ApplyImmediately=True)["DBInstance"]
    eq(m["DBInstanceStatus"], "renaming", "rename response")
    try:
        rds.modify_db_instance(DBInstanceIdentifier="db1-old", DBInstanceClass="db.t3.small", ApplyImmediately=True)
        raise AssertionError("a renaming instance was modified")
    except ClientError as e:
        eq(e.response["Error"]["Code"], "InvalidDBInstanceState", "modify while renaming")
    seen = [rds.describe_db_instances(DBInstanceIdentifier="db1-old")["DBInstances"][0] for _ in range(2)]
    eq([x["DBInstanceStatus"] for x in seen], ["renaming", "available"], "rename progress")
    assert seen[-1]["Endpoint"]["Address"] != before and seen[-1]["Endpoint"]["Address"].startswith("db1-old."), seen
    try:
        rds.describe_db_instances(DBInstanceIdentifier="db1")
        raise AssertionError("the old name still answers")
    except ClientError as e:
        eq(e.response["Error"]["Code"], "DBInstanceNotFound", "old name gone")
    rds.modify_db_instance(DBInstanceIdentifier="db1-new", NewDBInstanceIdentifier="db1", ApplyImmediately=True)
    rds.describe_db_instances(DBInstanceIdentifier="db1")
    x = rds.describe_db_instances(DBInstanceIdentifier="db1")["DBInstances"][0]
    eq((x["DBInstanceStatus"], x["Endpoint"]["Address"]), ("available", before), "same name, same address")
    rds.stop_db_instance(DBInstanceIdentifier="db1")
    try:
        rds.modify_db_instance(DBInstanceIdentifier="db1", NewDBInstanceIdentifier="db1-x", ApplyImmediately=True)
        raise AssertionError("a stopped instance was renamed")
    except ClientError as e:
        eq(e.response["Error"]["Code"], "InvalidDBInstanceState", "rename while stopped")


@check
def rds_cluster_restore_and_rename_carry_the_instances():
    rds = rds_fixture()
    rds.create_db_instance(DBInstanceIdentifier="cl1-1", DBClusterIdentifier="cl1", Engine="aurora-postgresql",
                           DBInstanceClass="db.r6g.large")
    rds.describe_db_clusters(DBClusterIdentifier="cl1")
    rds.create_db_cluster_snapshot(DBClusterIdentifier="cl1", DBClusterSnapshotIdentifier="cs1")
    ctl("POST", "/_test/rds/instance-rules", {"createDescribes": 1, "renameDescribes": 1})
    c = rds.restore_db_cluster_from_snapshot(DBClusterIdentifier="cl1-new", SnapshotIdentifier="cs1",
                                             Engine="aurora-postgresql")["DBCluster"]
    eq(c["Status"], "creating", "cluster restore response")
    seen = [rds.describe_db_clusters(DBClusterIdentifier="cl1-new")["DBClusters"][0]["Status"] for _ in range(2)]
    eq(seen, ["creating", "available"], "cluster restore progress")
    try:
        rds.modify_db_cluster(DBClusterIdentifier="cl1", NewDBClusterIdentifier="cl1-new", ApplyImmediately=True)
        raise AssertionError("a taken cluster name was accepted")
    except ClientError as e:
        eq(e.response["Error"]["Code"], "DBClusterAlreadyExistsFault", "taken cluster name")
    before = rds.describe_db_clusters(DBClusterIdentifier="cl1")["DBClusters"][0]["Endpoint"]
    m = rds.modify_db_cluster(DBClusterIdentifier="cl1", NewDBClusterIdentifier="cl1-old", ApplyImmediately=True)
    eq(m["DBCluster"]["Status"], "renaming", "cluster rename response")
    try:
        rds.modify_db_cluster(DBClusterIdentifier="cl1-old", NewDBClusterIdentifier="cl1-x", ApplyImmediately=True)
        raise AssertionError("a renaming cluster was modified")
    except ClientError as e:
        eq(e.response["Error"]["Code"], "InvalidDBClusterStateFault", "modify while renaming")
    seen = [rds.describe_db_clusters(DBClusterIdentifier="cl1-old")["DBClusters"][0] for _ in range(2)]
    eq([x["Status"] for x in seen], ["renaming", "available"], "cluster rename progress")
    assert seen[-1]["Endpoint"] != before, seen
    inst = rds.describe_db_instances(DBInstanceIdentifier="cl1-1")["DBInstances"][0]
    eq(inst["DBClusterIdentifier"], "cl1-old", "the instance follows its cluster's rename")
    rds.describe_db_clusters(DBClusterIdentifier="cl1-new")
    rds.modify_db_cluster(DBClusterIdentifier="cl1-new", NewDBClusterIdentifier="cl1", ApplyImmediately=True)
    rds.describe_db_clusters(DBClusterIdentifier="cl1")
    eq(rds.describe_db_clusters(DBClusterIdentifier="cl1")["DBClusters"][0]["Endpoint"], before,
       "another cluster under the name has the name's address")
    ids = {d["DbiResourceId"] for d in rds.describe_db_instances()["DBInstances"]}
    eq(len(ids), len(rds.describe_db_instances()["DBInstances"]), "every instance its own DbiResourceId")


# ----------------------------------------------------------------------------- CloudWatch
def signed(service: str, body: bytes, headers: dict, path: str = "/"):
    req = botocore.awsrequest.AWSRequest(method="POST", url=URL + path, data=body, headers=headers)
    botocore.auth.SigV4Auth(botocore.credentials.Credentials("test", "test"), service, REGION).add_auth(req)
    r = urllib.request.Request(URL + path, data=body, method="POST", headers=dict(req.headers.items()))
    try:
        with OPENER.open(r, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def cbor_call(operation: str, params: dict, validate: bool = True):
    """Exactly what aws-sdk-cloudwatch 1.x sends: smithy rpc-v2-cbor."""
    model = boto3.session.Session().client("cloudwatch", region_name=REGION)._service_model
    op = model.operation_model(operation)
    ser = botocore.serialize.create_serializer("smithy-rpc-v2-cbor", validate).serialize_to_request(params, op)
    status, headers, body = signed("monitoring", ser["body"], dict(ser["headers"]), ser["url_path"])
    parser = botocore.parsers.create_parser("smithy-rpc-v2-cbor")
    parsed = parser.parse({"status_code": status, "headers": {k.lower(): v for k, v in headers.items()},
                           "body": body}, op.output_shape)
    return status, headers, parsed


@check
def cloudwatch_json_query_and_cbor():
    cw = client("cloudwatch")
    now = dtm.datetime.now(dtm.timezone.utc)
    base = (int(now.timestamp()) // 60 - 3) * 60  # a minute boundary 3-4 minutes ago
    ago = now.timestamp() - base
    ctl("POST", "/_test/cloudwatch/metric", {
        "namespace": "AWS/ApplicationELB", "metric": "RequestCount", "region": REGION,
        "dimensions": {"TargetGroup": "targetgroup/web/abc"},
        "values": [{"secondsAgo": ago - 5, "value": 5}, {"secondsAgo": ago - 55, "value": 7},
                   {"secondsAgo": ago - 65, "value": 1}]})
    cw.put_metric_data(Namespace="AWS/RDS", MetricData=[
        {"MetricName": "CPUUtilization", "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "db1"}],
         "Value": v, "Timestamp": now - dtm.timedelta(seconds=10)} for v in (20.0, 40.0)])
    dims = [{"Name": "TargetGroup", "Value": "targetgroup/web/abc"}]
    start, end = now - dtm.timedelta(minutes=10), now + dtm.timedelta(minutes=1)
    st = cw.get_metric_statistics(Namespace="AWS/ApplicationELB", MetricName="RequestCount", Dimensions=dims,
                                  StartTime=start, EndTime=end, Period=60, Statistics=["Sum"])
    eq(sum(p["Sum"] for p in st["Datapoints"]), 13.0, "json GetMetricStatistics total")
    eq(sorted((p["Timestamp"].timestamp(), p["Sum"]) for p in st["Datapoints"]),
       [(base, 12.0), (base + 60, 1.0)], "60 s buckets on minute boundaries")
    cpu = cw.get_metric_statistics(Namespace="AWS/RDS", MetricName="CPUUtilization", StartTime=start, EndTime=end,
                                   Dimensions=[{"Name": "DBInstanceIdentifier", "Value": "db1"}], Period=60,
                                   Statistics=["Average"])
    eq([p["Average"] for p in cpu["Datapoints"]], [30.0], "Average")
    q = {"Id": "r", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
                                              "Dimensions": dims}, "Period": 60, "Stat": "Sum"}}
    md = cw.get_metric_data(MetricDataQueries=[q], StartTime=start, EndTime=end)
    eq(sum(md["MetricDataResults"][0]["Values"]), 13.0, "json GetMetricData")
    # rpc-v2-cbor (the Rust SDK's protocol)
    status, headers, parsed = cbor_call("GetMetricStatistics", {
        "Namespace": "AWS/RDS", "MetricName": "CPUUtilization", "StartTime": start, "EndTime": end, "Period": 60,
        "Statistics": ["Average"], "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "db1"}]})
    eq((status, headers.get("smithy-protocol")), (200, "rpc-v2-cbor"), "cbor status")
    eq([p["Average"] for p in parsed["Datapoints"]], [30.0], "cbor Average")
    assert isinstance(parsed["Datapoints"][0]["Timestamp"], dtm.datetime)
    status, _, parsed = cbor_call("GetMetricData", {"MetricDataQueries": [q], "StartTime": start, "EndTime": end})
    eq(sum(parsed["MetricDataResults"][0]["Values"]), 13.0, "cbor GetMetricData")
    status, _, parsed = cbor_call("PutMetricData", {"Namespace": "X", "MetricData": [{"MetricName": "m", "Value": 1}]})
    eq(status, 200, "cbor PutMetricData")
    status, _, parsed = cbor_call("GetMetricStatistics", {"Namespace": "X", "MetricName": "m", "StartTime": end,
                                                          "EndTime": start, "Period": 60, "Statistics": ["Sum"]})
    eq((status, parsed["Error"]["Code"]), (400, "InvalidParameterValue"), "cbor error")
    # awsQuery
    form = (f"Action=GetMetricStatistics&Version=2010-08-01&Namespace=AWS%2FRDS&MetricName=CPUUtilization"
            f"&StartTime={start:%Y-%m-%dT%H:%M:%SZ}&EndTime={end:%Y-%m-%dT%H:%M:%SZ}&Period=60"
            f"&Statistics.member.1=Average&Dimensions.member.1.Name=DBInstanceIdentifier"
            f"&Dimensions.member.1.Value=db1").encode()
    status, _, body = signed("monitoring", form, {"Content-Type": "application/x-www-form-urlencoded"})
    eq(status, 200, "query status")
    assert b"<Average>30.0</Average>" in body, body
    put = (f"Action=PutMetricData&Version=2010-08-01&Namespace=Q&MetricData.member.1.MetricName=m"
           f"&MetricData.member.1.Value=4&MetricData.member.1.Timestamp={now:%Y-%m-%dT%H:%M:%SZ}").encode()
    eq(signed("monitoring", put, {"Content-Type": "application/x-www-form-urlencoded"})[0], 200, "query put")
    gmd = (f"Action=GetMetricData&Version=2010-08-01&StartTime={start:%Y-%m-%dT%H:%M:%SZ}"
           f"&EndTime={end:%Y-%m-%dT%H:%M:%SZ}&MetricDataQueries.member.1.Id=q"
           f"&MetricDataQueries.member.1.MetricStat.Metric.Namespace=Q"
           f"&MetricDataQueries.member.1.MetricStat.Metric.MetricName=m"
           f"&MetricDataQueries.member.1.MetricStat.Period=60&MetricDataQueries.member.1.MetricStat.Stat=Sum").encode()
    status, _, body = signed("monitoring", gmd, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"<member>4.0</member>" in body, body


# ----------------------------------------------------------------------------- faults
@check
def faults_throttle_5xx_latency_reset_after():
    ecs, rds = client("ecs"), client("rds")
    ecs.create_cluster(clusterName="prod")
    ctl("POST", "/_test/faults", {"operation": "DescribeClusters", "service": "ecs", "kind": "throttle", "count": 2})
    for _ in range(2):
        try:
            ecs.describe_clusters(clusters=["prod"])
            raise AssertionError("not throttled")
        except ClientError as e:
            eq((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]),
               ("ThrottlingException", 400), "json throttle")
            eq(e.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"], "ThrottlingException", "header")
    ecs.describe_clusters(clusters=["prod"])
    ctl("POST", "/_test/faults", {"operation": "DescribeDBSnapshots", "kind": "throttle", "after": 1})
    rds.describe_db_snapshots()
    try:
        rds.describe_db_snapshots()
        raise AssertionError("not throttled")
    except ClientError as e:
        eq((e.response["Error"]["Code"], e.response["Error"]["Type"]), ("Throttling", "Sender"), "query throttle")
    rds.describe_db_snapshots()
    for kind, code, status in (("500", "InternalFailure", 500), ("503", "ServiceUnavailable", 503)):
        ctl("POST", "/_test/faults", {"operation": "ListClusters", "kind": kind})
        try:
            ecs.list_clusters()
            raise AssertionError("no fault")
        except ClientError as e:
            eq((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]), (code, status), kind)
        ctl("POST", "/_test/faults", {"operation": "DescribeDBInstances", "kind": kind})
        try:
            rds.describe_db_instances()
            raise AssertionError("no fault")
        except ClientError as e:
            eq(e.response["Error"]["Code"], code, f"query {kind}")
    ctl("POST", "/_test/faults", {"operation": "ListClusters", "kind": "denied"})
    try:
        ecs.list_clusters()
        raise AssertionError("no fault")
    except ClientError as e:
        eq((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]),
           ("AccessDeniedException", 400), "json denied")
        assert "is not authorized to perform: ecs:ListClusters" in e.response["Error"]["Message"], e
    ctl("POST", "/_test/faults", {"operation": "DescribeDBInstances", "kind": "denied"})
    try:
        rds.describe_db_instances()
        raise AssertionError("no fault")
    except ClientError as e:
        eq((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]),
           ("AccessDenied", 403), "query denied")
    ctl("POST", "/_test/faults", {"operation": "GetMetricData", "kind": "throttle"})
    status, headers, parsed = cbor_call("GetMetricData", {"MetricDataQueries": [], "StartTime": 0, "EndTime": 60})
    eq((status, parsed["Error"]["Code"]), (400, "Throttling"), "cbor throttle (query-compatible code)")
    ctl("POST", "/_test/faults", {"operation": "ListClusters", "kind": "latency", "latencyMs": 300})
    t0 = time.time()
    ecs.list_clusters()
    assert time.time() - t0 >= 0.3, "latency"
    ctl("POST", "/_test/faults", {"operation": "ListClusters", "kind": "reset"})
    try:
        ecs.list_clusters()
        raise AssertionError("no reset")
    except (ConnectionClosedError, EndpointConnectionError, ConnectionError) as e:
        assert "Connection" in type(e).__name__, e
    ecs.list_clusters()
    ctl("POST", "/_test/faults", {"operation": "ListClusters", "kind": "throttle", "count": -1})
    for _ in range(3):
        try:
            ecs.list_clusters()
            raise AssertionError("not throttled")
        except ClientError:
            pass
    eq(ctl("DELETE", "/_test/faults"), [], "cleared")
    ecs.list_clusters()
    faulted = [c["fault"] for c in ctl("GET", "/_test/calls") if c["fault"]]
    eq(faulted.count("reset") + faulted.count("latency"), 2, "call log records faults")


@check
def moto_crash_is_aws_shaped_500():
    ecs = client("ecs")
    ecs.create_cluster(clusterName="ec2only")
    ecs.register_task_definition(family="w", containerDefinitions=[{"name": "a", "image": "x", "memory": 64}])
    try:
        ecs.run_task(cluster="ec2only", taskDefinition="w", launchType="EC2")  # no container instances: crash
        raise AssertionError("no error")
    except ClientError as e:
        eq((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]), ("InternalFailure", 500),
           "crash")


# ----------------------------------------------------------------------------- call log, other services
@check
def call_log_and_other_services():
    ctl("DELETE", "/_test/calls")
    logs, ssm, elb, ec2, sts = (client(n) for n in ("logs", "ssm", "elbv2", "ec2", "sts"))
    logs.create_log_group(logGroupName="g")
    ssm.put_parameter(Name="/app/prod/DB_URL", Value="postgres://x", Type="SecureString")
    eq(len(ssm.get_parameters_by_path(Path="/app/prod", WithDecryption=True)["Parameters"]), 1, "ssm")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lb = elb.create_load_balancer(Name="web", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    ls = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                             DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
    elb.create_rule(ListenerArn=ls["Listeners"][0]["ListenerArn"], Priority=1,
                    Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
                    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}])
    sts.get_caller_identity()
    calls = ctl("GET", "/_test/calls")
    got = [(c["service"], c["operation"]) for c in calls]
    for want in [("logs", "CreateLogGroup"), ("ssm", "PutParameter"), ("ssm", "GetParametersByPath"),
                 ("ec2", "DescribeVpcs"), ("elbv2", "CreateLoadBalancer"), ("elbv2", "CreateRule"),
                 ("sts", "GetCallerIdentity")]:
        assert want in got, (want, got)
    assert all(c["region"] == REGION and c["status"] == 200 and c["fault"] is None for c in calls), calls
    eq([c["seq"] for c in calls], sorted(c["seq"] for c in calls), "ordered")
    later = ctl("GET", f"/_test/calls?since={calls[-2]['seq']}")
    eq([c["seq"] for c in later], [calls[-1]["seq"]], "since")
    assert not any(c["operation"] is None for c in calls)


@check
def exits_on_stdin_eof():
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "local_aws.py"), "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("LOCAL_AWS_READY http://127.0.0.1:"), line
    eq(proc.stdout.readline(), "", "exactly one line on stdout")  # blocks until exit: stdout closed
    proc.stdin.close()
    eq(proc.wait(10), 0, "clean exit when the harness goes away")


@check
def concurrency_and_reset_speed():
    ecs = client("ecs")
    ecs.create_cluster(clusterName="prod")
    ctl("POST", "/_test/faults", {"operation": "ListClusters", "kind": "latency", "latencyMs": 300, "count": 20})
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: client("ecs").list_clusters()["clusterArns"], range(20)))
    took = time.time() - t0
    assert all(len(r) == 1 for r in results), results
    assert took < 2.0, f"20 x 300 ms requests took {took:.2f}s: not concurrent"
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda _: client("ecs").describe_clusters(clusters=["prod"]), range(20)))
    ctl("POST", "/_test/ecs/task-rules", {"match": "x"})
    t0 = time.time()
    ctl("POST", "/_test/reset")
    reset = time.time() - t0
    assert reset < 0.5, f"reset took {reset:.2f}s"
    eq((ctl("GET", "/_test/ecs/task-rules"), ctl("GET", "/_test/calls"), ctl("GET", "/_test/faults")),
       ([], [], []), "reset clears emulator state")
    eq(client("ecs").list_clusters()["clusterArns"], [], "reset clears moto")
    print(f"    (20 concurrent 300 ms calls took {took:.2f}s; reset {reset * 1000:.0f} ms)")


# ----------------------------------------------------------------------------- strict mode
# One check per rule (emulator/README.md, "Strict mode"): a request that breaks it gets AWS's error
# code, one that keeps it passes. boto3's own parameter validation is off so the request reaches us.
def raw(name: str):
    return boto3.client(name, endpoint_url=URL, region_name=REGION, aws_access_key_id="test",
                        aws_secret_access_key="test",
                        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False))


def refused(code: str, fn, *args, contains: str = "", **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        err, status = e.response["Error"], e.response["ResponseMetadata"]["HTTPStatusCode"]
        eq((err["Code"], status), (code, 400), f"{fn.__name__} refused")
        assert contains in err.get("Message", ""), (contains, err)
        return err["Message"]
    raise AssertionError(f"{fn.__name__} was accepted; AWS answers {code}")


def strict_ecs(revisions: int = 2):
    ecs = raw("ecs")
    ecs.create_cluster(clusterName="prod")
    for _ in range(revisions):
        ecs.register_task_definition(family="web", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                     cpu="256", memory="512",
                                     containerDefinitions=[{"name": "app", "image": "app:1", "essential": True}])
    subnet = client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    return ecs, {"awsvpcConfiguration": {"subnets": [subnet]}}


@check
def strict_mode_is_on_by_default():
    st = ctl("GET", "/_test/strict")
    eq(st["strict"], True, "strict by default")
    eq(st["skippedPatterns"], [], "every model pattern translated")
    for key in ("ecs:RunTask", "ecs:UpdateService", "elbv2:CreateRule", "elbv2:AddTags", "rds:ModifyDBInstance"):
        assert key in st["rules"], key


@check
def strict_model_validation_json_services():
    ecs, _ = strict_ecs(1)
    refused("InvalidParameterException", ecs.run_task, cluster="prod", taskDefinition="web", launchType="FARGATEX",
            contains="Value 'FARGATEX' at 'launchType' failed to satisfy constraint: Member must satisfy enum")
    refused("InvalidParameterException", ecs.describe_task_definition, contains="Value null at 'taskDefinition'")
    logs, ssm, ecr, aas = raw("logs"), raw("ssm"), raw("ecr"), raw("application-autoscaling")
    refused("InvalidParameterException", logs.create_log_group, logGroupName="bad name!",
            contains="regular expression pattern")
    refused("InvalidParameterException", logs.get_log_events, logGroupName="g", logStreamName="s", limit=0,
            contains="greater than or equal to 1")
    refused("ValidationException", ssm.get_parameter, Name="", contains="length greater than or equal to 1")
    refused("InvalidParameterException", ecr.describe_images, repositoryName="A", contains="repositoryName")
    refused("ValidationException", aas.describe_scalable_targets, ServiceNamespace="nope", contains="enum")
    logs.create_log_group(logGroupName="/ecs/web")  # valid ones pass
    ssm.put_parameter(Name="/app/x", Value="1", Type="String")
    aas.describe_scalable_targets(ServiceNamespace="ecs")


@check
def strict_model_validation_query_and_cbor_services():
    rds, cw = raw("rds"), raw("cloudwatch")
    refused("ValidationError", rds.create_db_snapshot, DBInstanceIdentifier="db1",
            contains="Value null at 'dBSnapshotIdentifier' failed to satisfy constraint: Member must not be null")
    refused("ValidationError", cw.describe_alarms, MaxRecords=101, contains="less than or equal to 100")
    status, headers, parsed = cbor_call("GetMetricStatistics", {
        "Namespace": "AWS/ECS", "MetricName": "CPUUtilization", "StartTime": dtm.datetime(2026, 1, 1),
        "EndTime": dtm.datetime(2026, 1, 2), "Period": 0, "Statistics": ["Average"]}, validate=False)
    eq((status, headers.get("x-amzn-query-error")), (400, "ValidationError;Sender"), "cbor refusal")
    assert "Member must have value greater than or equal to 1" in parsed["Error"]["Message"], parsed
    cw.describe_alarms(MaxRecords=100)


@check
def strict_ecs_family_only_describe_is_latest_active():
    ecs, _ = strict_ecs(3)
    ecs.deregister_task_definition(taskDefinition="web:3")
    eq(ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]["revision"], 2, "latest ACTIVE")
    eq(ecs.describe_task_definition(taskDefinition="web:3")["taskDefinition"]["status"], "INACTIVE", "by revision")


@check
def strict_ecs_inactive_revision_refused():
    ecs, net = strict_ecs(2)
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:2", desiredCount=1,
                       launchType="FARGATE", networkConfiguration=net)
    ecs.deregister_task_definition(taskDefinition="web:2")
    run = dict(cluster="prod", launchType="FARGATE", networkConfiguration=net)
    refused("ClientException", ecs.run_task, taskDefinition="web:2", **run, contains="TaskDefinition is inactive")
    arn = ecs.describe_task_definition(taskDefinition="web:2")["taskDefinition"]["taskDefinitionArn"]
    refused("ClientException", ecs.run_task, taskDefinition=arn, **run)
    refused("ClientException", ecs.create_service, cluster="prod", serviceName="api", taskDefinition="web:2",
            desiredCount=1, launchType="FARGATE", networkConfiguration=net)
    refused("ClientException", ecs.update_service, cluster="prod", service="web", taskDefinition="web:2")
    ecs.update_service(cluster="prod", service="web", desiredCount=2)  # AWS: it can still scale
    ecs.run_task(taskDefinition="web:1", **run)
    ecs.run_task(taskDefinition="web", **run)  # family: latest ACTIVE (web:1)
    ecs.update_service(cluster="prod", service="web", taskDefinition="web:1")


@check
def strict_ecs_family_pattern():
    ecs = raw("ecs")
    cds = [{"name": "app", "image": "app:1", "memory": 64}]
    refused("ClientException", ecs.register_task_definition, family="bad fam!", containerDefinitions=cds,
            contains="bad fam!")
    refused("ClientException", ecs.register_task_definition, family="x" * 256, containerDefinitions=cds)
    ecs.register_task_definition(family="Good_fam-1", containerDefinitions=cds)


@check
def strict_ecs_tag_rules():
    ecs, _ = strict_ecs(1)
    cds = [{"name": "app", "image": "app:1", "memory": 64}]
    reg = ecs.register_task_definition
    refused("InvalidParameterException", reg, family="t", containerDefinitions=cds,
            tags=[{"key": "aws:x", "value": "1"}], contains="aws:")
    refused("InvalidParameterException", reg, family="t", containerDefinitions=cds,
            tags=[{"key": "AWS:x", "value": "1"}])
    refused("InvalidParameterException", reg, family="t", containerDefinitions=cds,
            tags=[{"key": f"k{i}", "value": "v"} for i in range(51)])
    refused("InvalidParameterException", reg, family="t", containerDefinitions=cds,
            tags=[{"key": "k" * 129, "value": "v"}])
    refused("InvalidParameterException", reg, family="t", containerDefinitions=cds,
            tags=[{"key": "k", "value": "v" * 257}])
    cluster = ecs.describe_clusters(clusters=["prod"])["clusters"][0]["clusterArn"]
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": f"k{i}", "value": "v"} for i in range(45)])
    refused("InvalidParameterException", ecs.tag_resource, resourceArn=cluster,
            tags=[{"key": f"n{i}", "value": "v"} for i in range(6)], contains="50 tags")
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": f"n{i}", "value": "v"} for i in range(5)])  # 50: fine
    reg(family="t", containerDefinitions=cds, tags=[{"key": "k" * 128, "value": "v" * 256}])


@check
def strict_ecs_update_service_on_code_deploy_or_external():
    ecs, net = strict_ecs(2)
    for kind in ("CODE_DEPLOY", "EXTERNAL"):
        name = kind.lower().replace("_", "-")
        ecs.create_service(cluster="prod", serviceName=name, taskDefinition="web:1", desiredCount=1,
                           deploymentController={"type": kind}, launchType="FARGATE", networkConfiguration=net)
        refused("InvalidParameterException", ecs.update_service, cluster="prod", service=name,
                taskDefinition="web:2", contains=f"{kind} deployment controller")
        ecs.update_service(cluster="prod", service=name, desiredCount=3)


def strict_alb():
    elb, ec2 = raw("elbv2"), client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lb = elb.create_load_balancer(Name="web", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc,
                                 TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    fw = [{"Type": "forward", "TargetGroupArn": tg}]
    ls = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=fw)
    return elb, ls["Listeners"][0]["ListenerArn"], fw, tg


def host(*names):
    return {"Field": "host-header", "HostHeaderConfig": {"Values": list(names)}}


@check
def strict_alb_condition_values():
    elb, ls, fw, _ = strict_alb()
    six = [host("a.x", "b.x", "c.x"), {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/a", "/b", "/c"]}}]
    refused("ValidationError", elb.create_rule, ListenerArn=ls, Priority=1, Actions=fw, Conditions=six,
            contains="'5' condition values")
    refused("ValidationError", elb.create_rule, ListenerArn=ls, Priority=1, Actions=fw,
            Conditions=[host(*[f"h{i}.x" for i in range(6)])])
    arn = elb.create_rule(ListenerArn=ls, Priority=1, Actions=fw,
                          Conditions=[host("a.x", "b.x", "c.x", "d.x", "e.x")])["Rules"][0]["RuleArn"]
    refused("ValidationError", elb.modify_rule, RuleArn=arn, Conditions=six)


@check
def strict_alb_condition_fields_at_most_once():
    elb, ls, fw, _ = strict_alb()
    twice = {
        "host-header": [host("a.x"), host("b.x")],
        "path-pattern": [{"Field": "path-pattern", "PathPatternConfig": {"Values": [p]}} for p in ("/a", "/b")],
        "http-request-method": [{"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": [m]}}
                                for m in ("GET", "POST")],
        "source-ip": [{"Field": "source-ip", "SourceIpConfig": {"Values": [c]}} for c in ("10.0.0.0/8", "1.2.3.4/32")],
    }
    for field, conds in twice.items():
        refused("ValidationError", elb.create_rule, ListenerArn=ls, Priority=1, Actions=fw, Conditions=conds,
                contains=f"one '{field}' condition")
    hdr = [{"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": f"X-{i}", "Values": ["1"]}} for i in (1, 2)]
    elb.create_rule(ListenerArn=ls, Priority=1, Actions=fw, Conditions=[host("a.x")] + hdr)  # http-header: many


@check
def strict_alb_priorities():
    elb, ls, fw, _ = strict_alb()
    for bad in (0, 50001):
        refused("ValidationError", elb.create_rule, ListenerArn=ls, Priority=bad, Actions=fw,
                Conditions=[host("a.x")], contains="at 'priority'")
    elb.create_rule(ListenerArn=ls, Priority=50000, Actions=fw, Conditions=[host("a.x")])
    refused("PriorityInUse", elb.create_rule, ListenerArn=ls, Priority=50000, Actions=fw, Conditions=[host("b.x")])
    r = elb.create_rule(ListenerArn=ls, Priority=1, Actions=fw, Conditions=[host("c.x")])["Rules"][0]["RuleArn"]
    refused("ValidationError", elb.set_rule_priorities,
            RulePriorities=[{"RuleArn": r, "Priority": 7}, {"RuleArn": r, "Priority": 7}])


@check
def strict_alb_rules_per_load_balancer():
    elb, ls, fw, _ = strict_alb()
    for i in range(100):
        elb.create_rule(ListenerArn=ls, Priority=i + 1, Actions=fw, Conditions=[host(f"h{i}.x")])
    refused("TooManyRules", elb.create_rule, ListenerArn=ls, Priority=101, Actions=fw, Conditions=[host("z.x")])


@check
def strict_elb_tag_rules():
    elb, _, _, tg = strict_alb()
    refused("ValidationError", elb.add_tags, ResourceArns=[tg], Tags=[{"Key": "k", "Value": '{"a"'}],
            contains="regular expression pattern")
    elb.add_tags(ResourceArns=[tg], Tags=[{"Key": f"k{i}", "Value": "ok-é 1:/=+@"} for i in range(50)])
    refused("TooManyTags", elb.add_tags, ResourceArns=[tg], Tags=[{"Key": "one-more", "Value": "v"}])
    elb.add_tags(ResourceArns=[tg], Tags=[{"Key": "k1", "Value": "overwrite"}])  # same key: still 50


@check
def strict_rds_state_rules():
    rds = rds_fixture()
    rds.describe_db_clusters(DBClusterIdentifier="cl1")
    db, cl = dict(DBInstanceIdentifier="db1"), dict(DBClusterIdentifier="cl1")
    refused("InvalidDBInstanceState", rds.start_db_instance, **db)
    refused("InvalidDBClusterStateFault", rds.start_db_cluster, **cl)
    rds.modify_db_instance(**db, AllocatedStorage=30, ApplyImmediately=True)
    rds.modify_db_cluster(**cl, BackupRetentionPeriod=3)
    ctl("POST", "/_test/rds/instance-rules", {"transitionDescribes": 5})
    rds.stop_db_instance(**db)
    rds.stop_db_cluster(**cl)
    refused("InvalidDBInstanceState", rds.create_db_snapshot, **db, DBSnapshotIdentifier="s1", contains="stopping")
    refused("InvalidDBClusterStateFault", rds.create_db_cluster_snapshot, **cl, DBClusterSnapshotIdentifier="c1")
    refused("InvalidDBInstanceState", rds.stop_db_instance, **db)
    refused("InvalidDBInstanceState", rds.modify_db_instance, **db, AllocatedStorage=40, ApplyImmediately=True)
    refused("InvalidDBClusterStateFault", rds.modify_db_cluster, **cl, BackupRetentionPeriod=4)
    refused("InvalidDBClusterStateFault", rds.stop_db_cluster, **cl)
    ctl("POST", "/_test/rds/instance-rules", {})
    for _ in range(6):
        rds.describe_db_instances(**db), rds.describe_db_clusters(**cl)
    rds.create_db_snapshot(**db, DBSnapshotIdentifier="s1")  # stopped: a snapshot is allowed
    rds.start_db_instance(**db)
    rds.start_db_cluster(**cl)


@check
def strict_off_with_no_strict_flag():
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "local_aws.py"), "--no-strict", "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().split()[1]
        with OPENER.open(url + "/_test/strict", timeout=10) as r:
            eq(json.loads(r.read())["strict"], False, "--no-strict")
        ecs = boto3.client("ecs", endpoint_url=url, region_name=REGION, aws_access_key_id="test",
                           aws_secret_access_key="test", config=Config(parameter_validation=False))
        ecs.register_task_definition(family="bad fam!", containerDefinitions=[{"name": "a", "image": "x", "memory": 8}])
    finally:
        proc.stdin.close()
        proc.wait(10)


# ----------------------------------------------------------------------------- runner
def main() -> int:
    global URL
    proc = None
    URL = os.environ.get("LOCAL_AWS_URL", "")
    if not URL:
        t0 = time.time()
        log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "local-aws-smoke.log"), "w")
        print(f"emulator log: {log.name}")
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "local_aws.py"), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=log, text=True)
        line = proc.stdout.readline().strip()
        assert line.startswith("LOCAL_AWS_READY http://127.0.0.1:"), line
        URL = line.split()[1]
        print(f"emulator ready at {URL} in {time.time() - t0:.1f}s")
    passed = failed = 0
    try:
        for fn in CHECKS:
            ctl("POST", "/_test/reset")
            t0 = time.time()
            try:
                fn()
                passed += 1
                print(f"ok   {fn.__name__} ({time.time() - t0:.2f}s)")
            except Exception:  # noqa: BLE001
                failed += 1
                print(f"FAIL {fn.__name__}")
                traceback.print_exc()
    finally:
        if proc:
            proc.terminate()
            rc = proc.wait(10)
            print(f"emulator exited with {rc} on SIGTERM")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
