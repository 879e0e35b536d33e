#!/usr/bin/env python3
"""Seed a realistic environment into the local AWS and write the deploy-action config for it.

    python emulator/seed.py --endpoint http://127.0.0.1:PORT --env stage --out /tmp/x/deploy.toml

or, without a Python process of its own, `POST /_test/seed {"args": ["--env", "stage", ...]}` to the emulator, which
runs `seed()` below in-process against itself and answers `{"config": "<the TOML>"}`.

Creates, in one region: an ECS cluster with core services (`core` with a sidecar, `workers` by default), task
definitions for them and for a `migrate` family, CloudWatch log groups, a Postgres RDS instance (or an Aurora
cluster with --aurora), and an ALB with a listener, target groups and forwarding rules. Waits until the services'
first roll-outs completed. Prints a one-line summary on stderr; writes the TOML config to --out (stdout if omitted).
Several environments can live in one region (names are prefixed with the environment).
"""

import argparse
import json
import sys
import threading
import time
import urllib.request

import boto3

ACCOUNT = "123456789012"
# The versions the tests and the demo deploy, migrate and run: their images are in ECR (the preflight checks them).
DEFAULT_IMAGE_VERSIONS = [
    "v1.0.0", "v1.1.0", "v1.2.0", "v1.2.1", "v1.2.2", "v1.2.3", "v1.3.0", "v1.4.0", "v1.5.0", "v1.9.0",
    "v2.0.0", "v2.1.0", "v2.2.0",
    "pr-12-a", "pr-12-b", "pr-12-c", "pr-12-abc", "pr-12-abc1234", "pr-12-def5678", "pr-7-abc", "pr-7-abc1234",
    # Version shapes (an image tag is the version with `/` and `+` made `-`): an rc, a label, a calver.
    "v1.2.0-rc1", "v3.56.2-rc1", "drizzle-init", "api-v1", "v1.0.0-a", "api-v2024.10.02.1",
]

# Clients by (service, endpoint, region): building one loads its service model, which costs more than the seed's
# calls; an emulator that seeds in-process keeps them. boto3 clients are thread-safe once built. One session for all
# of them: its loader keeps each service model, so a client for another region or endpoint parses nothing again.
_CLIENTS: dict = {}
_CLIENTS_LOCK = threading.Lock()
_SESSION: boto3.session.Session | None = None
SERVICES = ("ec2", "ecs", "logs", "elbv2", "rds", "application-autoscaling")


def warm():
    """Loads the session and the models of every service the seed calls (an emulator that forks warms up first)."""
    global _SESSION
    with _CLIENTS_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        for name in SERVICES:
            _SESSION.client(name, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def client(name, args):
    global _SESSION
    key = (name, args.endpoint, args.region)
    with _CLIENTS_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        if key not in _CLIENTS:
            _CLIENTS[key] = _SESSION.client(
                name,
                endpoint_url=args.endpoint,
                region_name=args.region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
        return _CLIENTS[key]


def parser():
    p = argparse.ArgumentParser(prog="seed.py")
    p.add_argument("--endpoint")
    p.add_argument("--env", default="stage")
    p.add_argument("--region", default="eu-central-1")
    p.add_argument("--services", default="core,workers", help="comma-separated core service names")
    p.add_argument("--version", default="v1.0.0", help="the version the services run now")
    p.add_argument("--aurora", action="store_true", help="an Aurora cluster instead of an RDS instance")
    p.add_argument("--no-database", action="store_true")
    p.add_argument("--no-maintenance", action="store_true")
    p.add_argument("--tasks", default="seed", help="comma-separated one-off task names for [tasks]")
    p.add_argument("--drain-window", type=int, default=60, help="maintenance.drain window-seconds in the config")
    p.add_argument(
        "--preview",
        action="store_true",
        help="make the environment a review-app template: a [preview] table (first service, the listener, seed and teardown tasks)",
    )
    p.add_argument(
        "--images",
        default=",".join(DEFAULT_IMAGE_VERSIONS),
        help="comma-separated versions whose images are pushed to the local ECR (empty: none), as a CI build would",
    )
    p.add_argument(
        "--autoscaling",
        action="store_true",
        help="register an Application Auto Scaling target (min 1, max 4, with a target-tracking policy) for the first service",
    )
    p.add_argument("--out")
    return p


def main():
    args = parser().parse_args()
    if not args.endpoint:
        sys.exit("seed.py: --endpoint is required")
    text, summary = seed(args)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    print(summary, file=sys.stderr)


def seed(args):
    """Seeds the environment `args` describe into the local AWS at `args.endpoint`; returns (config TOML, summary)."""
    env, region, version = args.env, args.region, args.version
    repo = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/app"
    names = [s for s in args.services.split(",") if s]
    ec2, ecs, logs, elb, rds = (client(n, args) for n in ("ec2", "ecs", "logs", "elbv2", "rds"))

    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]][:2]
    sg = ec2.create_security_group(GroupName=f"{env}-app", Description="app", VpcId=vpc)["GroupId"]

    cluster = f"app-{env}"
    ecs.create_cluster(clusterName=cluster, tags=[{"key": "environment", "value": env}])

    def log_config(family):
        group = f"/ecs/{cluster}/{family}"
        try:
            logs.create_log_group(logGroupName=group)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        return {"logDriver": "awslogs", "options": {"awslogs-group": group, "awslogs-region": region, "awslogs-stream-prefix": "ecs"}}

    def register(family, containers):
        return ecs.register_task_definition(
            family=f"{env}-{family}",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="512",
            memory="1024",
            executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/{env}-ecs-execution",
            taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/{env}-{family}",
            runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
            ephemeralStorage={"sizeInGiB": 30},
            containerDefinitions=containers,
            tags=[{"key": "environment", "value": env}],
        )["taskDefinition"]["taskDefinitionArn"]

    def container(name, image, essential=True, **extra):
        c = {
            "name": name,
            "image": image,
            "essential": essential,
            "memory": 512,
            "logConfiguration": log_config(name),
            "environment": [{"name": "NODE_ENV", "value": "production"}, {"name": "APP_ENV", "value": env}],
        }
        c.update(extra)
        return c

    # Load balancer, target groups, listener and forwarding rules.
    lb = elb.create_load_balancer(Name=f"app-{env}", Subnets=subnets, SecurityGroups=[sg], Scheme="internet-facing", Type="application")[
        "LoadBalancers"
    ][0]["LoadBalancerArn"]
    tgs = {}
    for n in names:
        tgs[n] = elb.create_target_group(Name=f"{env}-{n}"[:32], Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0][
            "TargetGroupArn"
        ]
    first_tg = tgs[names[0]]
    listener = elb.create_listener(
        LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": first_tg}]
    )["Listeners"][0]["ListenerArn"]
    elb.create_rule(
        ListenerArn=listener,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}}],
        Actions=[{"Type": "forward", "TargetGroupArn": first_tg}],
    )
    elb.create_rule(
        ListenerArn=listener,
        Priority=20,
        Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": [f"admin.{env}.example.org"]}}],
        Actions=[{"Type": "forward", "TargetGroupArn": first_tg}],
    )
    if len(names) > 1:
        elb.create_rule(
            ListenerArn=listener,
            Priority=30,
            Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": [f"/{names[1]}/*"]}}],
            Actions=[{"Type": "forward", "TargetGroupArn": tgs[names[1]]}],
        )

    # Task definitions and services.
    desired = {}
    for i, n in enumerate(names):
        containers = [container(n, f"{repo}:{n}-{version}", portMappings=[{"containerPort": 8080, "protocol": "tcp"}])]
        if i == 0:
            containers.append(container("nudenet", "ghcr.io/notai-tech/nudenet:3.4", essential=False))
        td = register(n, containers)
        desired[n] = 2 if i == 0 else 1
        ecs.create_service(
            cluster=cluster,
            serviceName=n,
            taskDefinition=td,
            desiredCount=desired[n],
            launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [sg], "assignPublicIp": "DISABLED"}},
            loadBalancers=[{"targetGroupArn": tgs[n], "containerName": n, "containerPort": 8080}],
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": True, "rollback": False},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            },
            tags=[{"key": "environment", "value": env}],
        )
    register("migrate", [container("migrate", f"{repo}:migrate-{version}", command=["npx", "drizzle-kit", "migrate"])])
    task_names = [t for t in args.tasks.split(",") if t]
    if args.preview and "seed" not in task_names:
        task_names.append("seed")  # the review apps' seed and teardown tasks run the seed family
    for t in task_names:
        register(t, [container(t, f"{repo}:{names[0]}-{version}", command=["npm", "run", t])])

    # Wait for the first roll-outs to settle.
    deadline = time.time() + 30
    while True:
        svcs = ecs.describe_services(cluster=cluster, services=names)["services"]
        if all(
            s["runningCount"] == s["desiredCount"] and all(d.get("rolloutState") == "COMPLETED" for d in s["deployments"] if d["status"] == "PRIMARY")
            for s in svcs
        ):
            break
        if time.time() > deadline:
            raise RuntimeError(f"seed: services did not settle: {json.dumps(svcs, default=str)[:500]}")
        time.sleep(0.05)

    # Images in ECR for the versions asked for: every service's, the migration's (the tasks run the first service's).
    versions = [v for v in args.images.split(",") if v]
    if versions:
        tags = [f"{n}-{v}" for v in versions for n in names] + [f"migrate-{v}" for v in versions]
        body = json.dumps({"repository": "app", "tags": tags, "region": region}).encode()
        req = urllib.request.Request(f"{args.endpoint}/_test/ecr/images", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()

    # Application Auto Scaling for the first service (min 1: it would bring tasks back at 0 unless suspended).
    if args.autoscaling:
        aas = client("application-autoscaling", args)
        rid = f"service/{cluster}/{names[0]}"
        aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension="ecs:service:DesiredCount",
                                     MinCapacity=1, MaxCapacity=4)
        aas.put_scaling_policy(PolicyName=f"{names[0]}-cpu", ServiceNamespace="ecs", ResourceId=rid,
                               ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
                               TargetTrackingScalingPolicyConfiguration={
                                   "TargetValue": 60.0,
                                   "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})

    # Database.
    db_line = ""
    if not args.no_database:
        ident = f"app-{env}"
        if args.aurora:
            rds.create_db_cluster(
                DBClusterIdentifier=ident, Engine="aurora-postgresql", MasterUsername="app", MasterUserPassword="not-a-secret-123"
            )
            rds.create_db_instance(DBInstanceIdentifier=f"{ident}-1", DBClusterIdentifier=ident, Engine="aurora-postgresql", DBInstanceClass="db.r6g.large")
            rds.describe_db_clusters(DBClusterIdentifier=ident)
            db_line = f'cluster = "{ident}"'
        else:
            rds.create_db_instance(
                DBInstanceIdentifier=ident,
                Engine="postgres",
                EngineVersion="16.11",
                DBInstanceClass="db.t4g.micro",
                AllocatedStorage=20,
                MasterUsername="app",
                MasterUserPassword="not-a-secret-123",
                Tags=[{"Key": "environment", "Value": env}],
            )
            db_line = f'instance = "{ident}"'

    toml = [
        "# Written by emulator/seed.py for the local AWS.",
        "[defaults]",
        f'region = "{region}"',
        f'image-repository = "{repo}"',
        "timeout-minutes = 10",
        "",
        f"[environments.{env}]",
        f'cluster = "{cluster}"',
        f'url = "https://{env}.example.org"',
        "",
    ]
    for n in names:
        toml += [
            f"[environments.{env}.services.{n}]",
            f'containers = ["{n}"]',
            f"desired-count = {desired[n]}",
            f'image-tag = "{n}-{{version}}"',
            "",
        ]
    toml += [
        f"[environments.{env}.migration]",
        f'family = "{env}-migrate"',
        'container = "migrate"',
        'image-tag = "migrate-{version}"',
        f'network-from-service = "{names[0]}"',
        "",
    ]
    for t in task_names:
        toml += [
            f"[environments.{env}.tasks.{t}]",
            f'family = "{env}-{t}"',
            f'container = "{t}"',
            f'image-tag = "{names[0]}-{{version}}"',
            "",
        ]
    if db_line:
        toml += [f"[environments.{env}.database]", db_line, ""]
    if not args.no_maintenance:
        toml += [
            f"[environments.{env}.maintenance]",
            f'listener-arn = "{listener}"',
            'fixed-response = { status-code = 503, content-type = "text/html", body = "<h1>Down for maintenance</h1>" }',
            f"drain = {{ threshold = 0, window-seconds = {args.drain_window}, timeout-minutes = 2 }}",
            "",
        ]
    if args.preview:
        toml += [
            f"[environments.{env}.preview]",
            f'service = "{names[0]}"',
            f'listener-arn = "{listener}"',
            f'host = "pr-{{number}}.{env}.example.org"',
            "priority-range = [1000, 1099]",
            f'target-group = {{ vpc-id = "{vpc}", port = 8080, health-check-path = "/health" }}',
            "",
            f"[environments.{env}.preview.seed]",
            f'family = "{env}-seed"',
            'container = "seed"',
            'command = ["npm", "run", "db:create-and-seed", "--", "--database", "pr_{number}"]',
            f'image-tag = "{names[0]}-{{version}}"',
            "",
            f"[environments.{env}.preview.teardown]",
            f'family = "{env}-seed"',
            'container = "seed"',
            'command = ["npm", "run", "db:drop", "--", "--database", "pr_{number}"]',
            f'image-tag = "{names[0]}-{{version}}"',
            "",
        ]
    text = "\n".join(toml)
    # The seed's own calls are not part of what a test asserts on.
    try:
        urllib.request.urlopen(urllib.request.Request(f"{args.endpoint}/_test/calls", method="DELETE"), timeout=5).read()
    except Exception:  # a plain moto without the extension has no call log
        pass
    summary = (
        f"seeded {env} in {region}: cluster {cluster}, services {', '.join(names)}, "
        f"{'aurora cluster' if args.aurora else 'rds instance'} app-{env}, listener {listener.rsplit('/', 3)[-3]}"
    )
    return text, summary


if __name__ == "__main__":
    main()
