"""RDS instance and cluster lifecycles moto 5.2.5 does not model: creation and restore that take a while,
renames that take a while and refuse a taken name, and modifications refused while the resource is busy.

Generic rules of the local AWS (see emulator/README.md, "RDS: creation, restore, rename"), installed by
`local_aws.py` with `install(...)`. AWS behaviour they follow:

* A new or restored DB instance or cluster is `creating` until it is `available`
  (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html, DB instance status table).
* Renaming (ModifyDBInstance / ModifyDBCluster with NewDB*Identifier and ApplyImmediately) changes the endpoint,
  because the address contains the identifier; the instance is `renaming` and "not available until the new name
  becomes effective"; an existing name cannot be used
  (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_RenameInstance.html).
* ModifyDBInstance on an instance that is not `available` fails with `InvalidDBInstanceState` ("The DB instance
  isn't in a valid state", API reference of ModifyDBInstance); ModifyDBCluster likewise with
  `InvalidDBClusterStateFault`. That refusal is strict mode's (emulator/strict.py, RDS_STATES); the statuses it
  reads (`creating`, `renaming`) are set here.
"""
from __future__ import annotations

import copy
import hashlib
import random
import string
from typing import Any, Callable

from moto.rds.exceptions import DBInstanceAlreadyExists, RDSClientError


class DBClusterAlreadyExists(RDSClientError):
    def __init__(self, ident: str) -> None:
        super().__init__("DBClusterAlreadyExistsFault", f"DB Cluster {ident} already exists")


def lifecycle_step(obj: Any) -> None:
    """One describe that includes `obj`: it stays `shown` for `left` more describes, then becomes available."""
    lc = getattr(obj, "_emu_lifecycle", None)
    if not lc:
        return
    if lc["left"] > 0:
        lc["left"] -= 1
        obj.status = lc["shown"]
    else:
        obj.status = "available"
        obj._emu_lifecycle = None


def _begin(obj: Any, shown: str, n: int) -> None:
    """`obj` answers `shown` now and for the next `n` describes that include it (n = 0: available at the next)."""
    obj.status = shown
    obj._emu_lifecycle = {"shown": shown, "left": n}


def _identities(models: Any) -> None:
    """Every DB instance gets its own DbiResourceId (moto gives all the same one, so a restored instance looked like
    its original); a cluster endpoint's `cluster-<x>` part is the account's and Region's, not the cluster's (moto
    draws one per cluster, so a cluster renamed to a name got another address than the cluster that had it)."""
    inst_init = models.DBInstance.__init__

    def instance_init(self, *args, **kwargs):
        inst_init(self, *args, **kwargs)
        self.dbi_resource_id = "db-" + "".join(random.choices(string.ascii_uppercase + string.digits, k=26))

    models.DBInstance.__init__ = instance_init
    cl_init = models.DBCluster.__init__

    def cluster_init(self, *args, **kwargs):
        cl_init(self, *args, **kwargs)
        self.url_identifier = hashlib.sha1(f"{self.account_id}:{self.region}".encode()).hexdigest()[:12]

    models.DBCluster.__init__ = cluster_init


def install(response_cls: Any, models: Any, rule: Callable[[], dict]) -> None:
    """Wraps RDSResponse methods and model constructors. `rule()` returns the current instance rule
    (POST /_test/rds/instance-rules)."""
    _identities(models)

    def n_of(key: str) -> int:
        return int(rule().get(key, 0) or 0)

    def wrap(name: str, before=None, after=None) -> None:
        orig = getattr(response_cls, name)

        def wrapper(self):
            if before:
                before(self)
            res = orig(self)
            if after:
                after(self, res)
            return res

        setattr(response_cls, name, wrapper)

    # Creation and restore: `creating` for createDescribes describes.
    def created(key: str):
        def fn(handler, res):
            n = n_of("createDescribes")
            obj = res.result[key]
            if n > 0:
                _begin(obj, "creating", n)
                view = _view(obj)
                view.status = "creating"
                res.result[key] = view
        return fn

    for name, key in (("create_db_instance", "DBInstance"),
                      ("restore_db_instance_from_db_snapshot", "DBInstance"),
                      ("restore_db_cluster_from_snapshot", "DBCluster")):
        wrap(name, after=created(key))

    # A rename refuses a taken name and takes renameDescribes. (A modification while the resource is not available
    # is refused by strict mode's RDS state rules, emulator/strict.py, from the statuses set here.)
    def before_modify_instance(handler) -> None:
        ident = handler._get_param("DBInstanceIdentifier")
        db = handler.backend.databases.get(ident)
        if db is None:
            return  # moto answers DBInstanceNotFound
        new = handler._get_param("NewDBInstanceIdentifier")
        if new and new != ident and new in handler.backend.databases:
            raise DBInstanceAlreadyExists()
        handler._emu_new = new  # moto consumes the parameter

    def after_modify_instance(handler, res) -> None:
        new = getattr(handler, "_emu_new", None)
        if not new:
            return
        db = handler.backend.databases[new]
        _begin(db, "renaming", n_of("renameDescribes"))
        view = _view(db)
        view.status = "renaming"
        res.result["DBInstance"] = view

    wrap("modify_db_instance", before_modify_instance, after_modify_instance)

    def before_modify_cluster(handler) -> None:
        ident = handler._get_param("DBClusterIdentifier")
        cl = handler.backend.clusters.get(ident)
        if cl is None:
            return
        new = handler._get_param("NewDBClusterIdentifier")
        if new and new != ident and new in handler.backend.clusters:
            raise DBClusterAlreadyExists(new)
        handler._emu_new = new
        handler._emu_members = [d for d in handler.backend.databases.values()
                                if getattr(d, "db_cluster_identifier", None) == ident]

    def after_modify_cluster(handler, res) -> None:
        new = getattr(handler, "_emu_new", None)
        if not new:
            return
        for member in getattr(handler, "_emu_members", []):
            member.db_cluster_identifier = new  # instances follow their cluster's new name
        cl = handler.backend.clusters[new]
        _begin(cl, "renaming", n_of("renameDescribes"))
        view = _view(cl)
        view.status = "renaming"
        res.result["DBCluster"] = view

    wrap("modify_db_cluster", before_modify_cluster, after_modify_cluster)

    for name, key in (("describe_db_instances", "DBInstances"), ("describe_db_clusters", "DBClusters")):
        wrap(name, after=lambda h, r, key=key: [lifecycle_step(o) for o in r.result[key]])


def _view(obj: Any) -> Any:
    """A shallow copy for one response, so that what the response says does not change the stored object."""
    return copy.copy(obj)
