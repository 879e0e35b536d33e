//! Preflight: before the first change of a phase, one read of AWS and one pure plan of checks; a failed check stops
//! the phase before any mutating call.
//!
//! The checks, each a row of a table (check, result, detail) printed on stdout (text output; on stderr with
//! `output: json`, so stdout stays one JSON object) and in the step summary, on a dry run too:
//! - **images**: every image the phase will run for the version exists. ECR images
//!   (`<account>.dkr.ecr.<region>.amazonaws.com/...`) are looked up with BatchGetImage in their own region and
//!   registry; images elsewhere are listed as "not checked" with the reason. `wait-for-images` waits (bounded, through
//!   the one poller) for images still being pushed;
//! - **deployment controller**: each core service a deploy updates is on the `ECS` controller;
//! - **maintenance**: every forwarding rule can take the bypass-header condition within ALB's 5 condition values;
//! - **one-off task**: its task definition family and container, the core service it copies its network from, and an
//!   awslogs log configuration whose group exists.
//!
//! A check that cannot read (AccessDenied) fails and names the permission it needs. A failed check whose fix is in
//! the config exits 2; any other exits 1.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::aws::ecr::{self, Presence};
use crate::aws::ecs::td_short;
use crate::aws::{ecs, logs, AwsError};
use crate::config::{Environment, Maintenance, TaskConfig, TaskNetwork};
use crate::domain::maintenance::{self, MAX_RULE_VALUES};
use crate::domain::Ctx;
use crate::error::UsageError;
use crate::github::runner::{md_table, text_table, Runner};
use crate::inputs::OutputFormat;
use crate::version::Version;
use crate::wait::{human, Backoff, Check, Poller, WaitError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ok,
    Failed,
    NotChecked,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Failed => "FAILED",
            Verdict::NotChecked => "not checked",
        })
    }
}

/// Whose fix a failed check needs: the config or input (exit 2), or AWS (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Config,
    Aws,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub check: String,
    pub result: Verdict,
    pub detail: String,
    #[serde(skip)]
    pub fault: Fault,
}

impl Row {
    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Row {
        Row {
            check: check.into(),
            result: Verdict::Ok,
            detail: detail.into(),
            fault: Fault::Aws,
        }
    }
    fn failed(check: impl Into<String>, detail: impl Into<String>, fault: Fault) -> Row {
        Row {
            check: check.into(),
            result: Verdict::Failed,
            detail: detail.into(),
            fault,
        }
    }
    fn not_checked(check: impl Into<String>, detail: impl Into<String>) -> Row {
        Row {
            check: check.into(),
            result: Verdict::NotChecked,
            detail: detail.into(),
            fault: Fault::Aws,
        }
    }
}

/// The checks of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn failed(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.result == Verdict::Failed)
            .collect()
    }

    fn cells(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| vec![r.check.clone(), r.result.to_string(), r.detail.clone()])
            .collect()
    }

    pub fn text(&self, phase: &str) -> String {
        format!(
            "preflight ({phase}):\n{}",
            text_table(&["check", "result", "detail"], &self.cells())
        )
    }

    pub fn markdown(&self, phase: &str) -> String {
        format!(
            "### Preflight: {phase}\n\n{}",
            md_table(&["check", "result", "detail"], &self.cells())
        )
    }

    /// Pure: `Ok` when nothing failed; else the error that stops the phase: a [`UsageError`] (exit 2) when every
    /// failed check is the config's to fix.
    pub fn verdict(&self, phase: &str) -> Result<()> {
        let failed = self.failed();
        if failed.is_empty() {
            return Ok(());
        }
        let what: Vec<String> = failed
            .iter()
            .map(|r| format!("{}: {}", r.check, r.detail))
            .collect();
        let msg = format!(
            "preflight: {} check(s) failed, nothing was changed: {}",
            failed.len(),
            what.join("; ")
        );
        if failed.iter().all(|r| r.fault == Fault::Config) {
            return Err(UsageError::new(format!("phase {phase}: {msg}")).into());
        }
        anyhow::bail!("{msg}")
    }
}

/// Prints the table (stdout for text output, stderr with `output: json`) and the summary, then stops the phase if
/// a check failed.
pub fn finish(runner: &Runner, phase: &str, report: &Report) -> Result<()> {
    if report.rows.is_empty() {
        return Ok(());
    }
    match runner.format {
        OutputFormat::Text => println!("{}", report.text(phase)),
        OutputFormat::Json => eprintln!("{}", report.text(phase)),
    }
    // After the phase's own section, so its verdict stays the summary's first line.
    runner.defer_summary(&report.markdown(phase));
    report.verdict(phase)
}

// ---------------------------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------------------------

/// One image the phase will run: where it runs (`service core, container core`) and the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub what: String,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageState {
    Found,
    Missing(String),
    NotChecked(String),
    /// The lookup failed: the AWS error, and the permission it needs when it was AccessDenied.
    Unreadable(String),
}

/// What to do about an image the phase will run that is not in ECR (deploy, migrate, run, preview): push it.
pub const PUSH_IT: &str =
    "push it (or wait for the build that pushes it: input wait-for-images), then run again";

/// Pure: the image rows, a missing image with the fix [`PUSH_IT`].
pub fn image_rows(images: &[(Wanted, ImageState)]) -> Vec<Row> {
    image_rows_fix(images, PUSH_IT)
}

/// Pure: the image rows, a missing image with `fix`.
pub fn image_rows_fix(images: &[(Wanted, ImageState)], fix: &str) -> Vec<Row> {
    images
        .iter()
        .map(|(w, state)| {
            let check = format!("image of {}", w.what);
            match state {
                ImageState::Found => Row::ok(check, format!("{} exists", w.image)),
                ImageState::Missing(why) => Row::failed(
                    check,
                    format!("{} is not in ECR ({why}); {fix}", w.image),
                    Fault::Aws,
                ),
                ImageState::NotChecked(why) => {
                    Row::not_checked(check, format!("{}: {why}", w.image))
                }
                ImageState::Unreadable(why) => Row::failed(
                    check,
                    format!("{}: cannot tell: {why}", w.image),
                    Fault::Aws,
                ),
            }
        })
        .collect()
}

/// Where ECR lives for each region (AWS_ENDPOINT_URL applies to every region).
#[derive(Debug, Clone)]
pub struct Clients {
    pub sdk: aws_config::SdkConfig,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            sdk: sdk.clone(),
            ecs: aws_sdk_ecs::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
        }
    }

    fn ecr(&self, region: &str) -> aws_sdk_ecr::Client {
        let conf = aws_sdk_ecr::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        aws_sdk_ecr::Client::from_conf(conf)
    }
}

/// Looks every image up once: one BatchGetImage per repository (same account and region), in the order wanted.
async fn image_states(c: &Clients, wanted: &[Wanted]) -> Vec<(Wanted, ImageState)> {
    let mut states: Vec<Option<ImageState>> = wanted.iter().map(|_| None).collect();
    let mut groups: BTreeMap<(String, String, String), Vec<(usize, ecr::EcrImage)>> =
        BTreeMap::new();
    for (i, w) in wanted.iter().enumerate() {
        match ecr::parse(&w.image) {
            Ok(p) => groups
                .entry((p.account.clone(), p.region.clone(), p.repository.clone()))
                .or_default()
                .push((i, p)),
            Err(why) => {
                states[i] = Some(ImageState::NotChecked(format!(
                    "{why}; only ECR images are checked"
                )))
            }
        }
    }
    for ((_, region, _), members) in groups {
        let images: Vec<ecr::EcrImage> = members.iter().map(|(_, p)| p.clone()).collect();
        match ecr::presences(&c.ecr(&region), &images).await {
            Ok(found) => {
                for ((i, _), presence) in members.iter().zip(found) {
                    states[*i] = Some(match presence {
                        Presence::Found => ImageState::Found,
                        Presence::Missing(why) => ImageState::Missing(why),
                    });
                }
            }
            Err(e) => {
                let why = unreadable(&e, "ecr:BatchGetImage");
                for (i, _) in &members {
                    states[*i] = Some(ImageState::Unreadable(why.clone()));
                }
            }
        }
    }
    wanted
        .iter()
        .cloned()
        .zip(
            states
                .into_iter()
                .map(|s| s.unwrap_or(ImageState::NotChecked("not looked up".into()))),
        )
        .collect()
}

/// The error of a read the preflight could not make, naming the permission when it was AccessDenied.
fn unreadable(e: &AwsError, permission: &str) -> String {
    if ecr::is_access_denied(e) {
        format!("access denied: the role needs {permission} (see `deploy-action iam-policy`)")
    } else {
        e.to_string()
    }
}

/// Looks the images up once, or (with `wait` above 0) until they all exist or `wait` has passed, printing which are
/// still missing as that changes. Never fails: what is still missing is in the states.
pub async fn images(
    c: &Clients,
    wanted: &[Wanted],
    wait: Duration,
    poller: Poller,
) -> Vec<(Wanted, ImageState)> {
    let look = || image_states(c, wanted);
    if wait.is_zero() {
        return look().await;
    }
    let mut poller = poller;
    poller.deadline = poller.deadline.min(tokio::time::Instant::now() + wait);
    poller.what = format!("images to be pushed (wait-for-images {})", human(wait));
    let waited = poller
        .run(|| async {
            let states = look().await;
            let missing: Vec<&str> = states
                .iter()
                .filter(|(_, s)| matches!(s, ImageState::Missing(_)))
                .map(|(w, _)| w.image.as_str())
                .collect();
            if missing.is_empty() {
                return Ok(Check::Done(states));
            }
            Ok(Check::Pending(format!(
                "waiting for {} of {} image(s) to be pushed: {}",
                missing.len(),
                states.len(),
                missing.join(", ")
            )))
        })
        .await;
    match waited {
        Ok(states) => states,
        Err(WaitError::Timeout { .. } | WaitError::Cancelled { .. } | WaitError::Failed(_)) => {
            look().await
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Deployment controllers
// ---------------------------------------------------------------------------------------------------------------

/// Pure: each core service's deployment controller (`None`: not reported, which is ECS).
pub fn controller_rows(cluster: &str, services: &[(String, Option<String>)]) -> Vec<Row> {
    services
        .iter()
        .map(|(name, controller)| {
            let check = format!("deployment controller of {name}");
            match ecs::controller_refusal(cluster, name, controller.as_deref()) {
                None => Row::ok(check, "ECS"),
                Some(why) => Row::failed(check, why, Fault::Aws),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Maintenance
// ---------------------------------------------------------------------------------------------------------------

/// Pure: whether every forwarding rule can take one more condition value.
pub fn maintenance_rows(listener: &str, rules: &[(String, usize)]) -> Vec<Row> {
    let full: Vec<String> = rules
        .iter()
        .filter(|(_, n)| n + 1 > MAX_RULE_VALUES)
        .map(|(label, n)| format!("{label} has {n} condition values"))
        .collect();
    let check = "maintenance can go on";
    if full.is_empty() {
        return vec![Row::ok(
            check,
            format!(
                "{} forwarding rule(s) of listener {} can take the bypass-header condition",
                rules.len(),
                short_listener(listener)
            ),
        )];
    }
    vec![Row::failed(
        check,
        format!(
            "{}; ALB allows {MAX_RULE_VALUES} per rule and maintenance adds the bypass-header condition to every forwarding rule: merge or split the rule's values (e.g. two rules), then run again",
            full.join("; ")
        ),
        Fault::Aws,
    )]
}

fn short_listener(arn: &str) -> &str {
    arn.rsplit_once(":listener/").map(|(_, s)| s).unwrap_or(arn)
}

pub async fn maintenance(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    cfg: &Maintenance,
) -> Result<Vec<Row>> {
    let snap = maintenance::inspect(elb, &cfg.listener_arn).await?;
    Ok(maintenance_rows(
        &cfg.listener_arn,
        &maintenance::forwarding_rule_values(&snap),
    ))
}

// ---------------------------------------------------------------------------------------------------------------
// One-off tasks
// ---------------------------------------------------------------------------------------------------------------

/// What was found for a one-off task (migration or `[tasks]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFacts {
    /// `Ok(family:revision)` of the latest ACTIVE revision, or why there is none.
    pub family: Result<String, String>,
    /// Whether the task definition has the configured container.
    pub container: Result<(), String>,
    /// `None` with explicit network settings; else whether the service it copies its network from exists.
    pub network: Option<Result<(), String>>,
    /// The awslogs group (and whether it exists), or why the output cannot be followed.
    pub logs: Result<String, String>,
}

/// Pure: the rows of a one-off task.
pub fn task_rows(key: &str, label: &str, f: &TaskFacts) -> Vec<Row> {
    let mut rows = vec![match &f.family {
        Ok(td) => Row::ok(format!("{label} task definition"), td.clone()),
        Err(why) => Row::failed(
            format!("{label} task definition"),
            format!("{why}; register one, or correct {key}.family in the config"),
            Fault::Config,
        ),
    }];
    if f.family.is_ok() {
        rows.push(match &f.container {
            Ok(()) => Row::ok(format!("{label} container"), "present"),
            Err(why) => Row::failed(
                format!("{label} container"),
                format!("{why}; correct {key}.container in the config"),
                Fault::Config,
            ),
        });
    }
    // The logs are the container's: without it there is nothing more to say than the container row did.
    if f.family.is_ok() && f.container.is_ok() {
        rows.push(match &f.logs {
            Ok(group) => Row::ok(format!("{label} logs"), format!("awslogs group {group}")),
            Err(why) => Row::failed(
                format!("{label} logs"),
                format!("{why}: the output could not be followed; give the container an awslogs log configuration whose group exists"),
                Fault::Aws,
            ),
        });
    }
    if let Some(net) = &f.network {
        rows.push(match net {
            Ok(()) => Row::ok(format!("{label} network"), "source service exists"),
            Err(why) => Row::failed(
                format!("{label} network"),
                format!("{why}; correct {key}.network-from-service in the config, or give network settings"),
                Fault::Config,
            ),
        });
    }
    rows
}

/// Reads the task's family, container, network source and log group; returns the facts and the image it will run.
pub async fn task(
    c: &Clients,
    env: &Environment,
    cfg: &TaskConfig,
    version: &Version,
) -> Result<(TaskFacts, Option<String>)> {
    let latest = ecs::latest_task_definition(&c.ecs, &cfg.family)
        .await
        .map_err(|e| anyhow::anyhow!(unreadable(&e, "ecs:DescribeTaskDefinition")))?;
    let network = match &cfg.network {
        TaskNetwork::Explicit(_) => None,
        TaskNetwork::FromService(name) => Some(
            ecs::describe_services(&c.ecs, &env.cluster, std::slice::from_ref(name))
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:#}")),
        ),
    };
    let Some((td, _)) = latest else {
        let facts = TaskFacts {
            family: Err(format!(
                "task definition family {} has no ACTIVE revision",
                cfg.family
            )),
            container: Err(String::new()),
            network,
            logs: Err(String::new()),
        };
        return Ok((facts, None));
    };
    let name = td_short(td.task_definition_arn().unwrap_or_default()).to_string();
    let container = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(cfg.container.as_str()));
    let (container_ok, logs_found, image) = match container {
        None => {
            let names: Vec<&str> = td
                .container_definitions()
                .iter()
                .filter_map(|c| c.name())
                .collect();
            (
                Err(format!(
                    "{name} has no container {:?} (it has: {})",
                    cfg.container,
                    names.join(", ")
                )),
                Err("no container".to_string()),
                None,
            )
        }
        Some(def) => {
            let image = cfg
                .image
                .image_for(version, def.image().unwrap_or_default())?;
            (Ok(()), log_group(c, &cfg.container, def).await, Some(image))
        }
    };
    Ok((
        TaskFacts {
            family: Ok(name),
            container: container_ok,
            network,
            logs: logs_found,
        },
        image,
    ))
}

/// The preflight rows of a one-off task (migrate's migration, run's task): its definition, container, logs and
/// network source, then its image (waited for up to `wait_for_images`).
pub async fn one_off(
    c: &Clients,
    env: &Environment,
    cfg: &TaskConfig,
    label: &str,
    version: &Version,
    wait_for_images: Duration,
    ctx: &Ctx,
) -> Result<Vec<Row>> {
    let (facts, image) = task(c, env, cfg, version).await?;
    let mut rows = task_rows(&cfg.key, label, &facts);
    if let Some(image) = image {
        let wanted = [Wanted {
            what: format!("{label}, container {}", cfg.container),
            image,
        }];
        let poller = ctx.poller("images", Backoff::SLOW);
        rows.extend(image_rows(
            &images(c, &wanted, wait_for_images, poller).await,
        ));
    }
    Ok(rows)
}

async fn log_group(
    c: &Clients,
    container: &str,
    def: &aws_sdk_ecs::types::ContainerDefinition,
) -> Result<String, String> {
    let lc = def.log_configuration();
    let options = lc.and_then(|l| l.options()).cloned().unwrap_or_default();
    let target = crate::domain::task::log_target(
        lc.map(|l| l.log_driver().as_str()),
        &options,
        container,
        "x",
    )?;
    match logs::log_group_exists(&c.logs, &target.group).await {
        Ok(true) => Ok(target.group),
        Ok(false) => Err(format!("log group {} does not exist", target.group)),
        Err(e) => Err(format!(
            "cannot tell whether log group {} exists: {}",
            target.group,
            unreadable(&e, "logs:DescribeLogGroups")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(image: &str) -> Wanted {
        Wanted {
            what: "service core, container core".into(),
            image: image.into(),
        }
    }

    #[test]
    fn image_rows_name_the_image_and_the_fix() {
        let rows = image_rows(&[
            (wanted("r/app:core-v1"), ImageState::Found),
            (
                wanted("r/app:workers-v9"),
                ImageState::Missing("ImageNotFound".into()),
            ),
            (
                wanted("ghcr.io/x:1"),
                ImageState::NotChecked("not ECR".into()),
            ),
            (
                wanted("r/app:x"),
                ImageState::Unreadable("access denied: the role needs ecr:BatchGetImage".into()),
            ),
        ]);
        let results: Vec<Verdict> = rows.iter().map(|r| r.result).collect();
        assert_eq!(
            results,
            vec![
                Verdict::Ok,
                Verdict::Failed,
                Verdict::NotChecked,
                Verdict::Failed
            ]
        );
        assert!(rows[1].detail.contains("r/app:workers-v9 is not in ECR"));
        assert!(rows[3].detail.contains("ecr:BatchGetImage"));
    }

    #[test]
    fn controllers() {
        let rows = controller_rows(
            "app",
            &[
                ("core".into(), None),
                ("api".into(), Some("ECS".into())),
                ("web".into(), Some("CODE_DEPLOY".into())),
                ("ext".into(), Some("EXTERNAL".into())),
            ],
        );
        let failed: Vec<&str> = rows
            .iter()
            .filter(|r| r.result == Verdict::Failed)
            .map(|r| r.check.as_str())
            .collect();
        assert_eq!(
            failed,
            vec![
                "deployment controller of web",
                "deployment controller of ext"
            ]
        );
        assert!(rows[2].detail.contains("app/web uses the CODE_DEPLOY"));
    }

    #[test]
    fn rules_within_the_limit() {
        let l = "arn:aws:elasticloadbalancing:r:1:listener/app/lb/1/2";
        assert_eq!(maintenance_rows(l, &[])[0].result, Verdict::Ok);
        assert_eq!(
            maintenance_rows(l, &[("rule 10".into(), 4)])[0].result,
            Verdict::Ok
        );
        let full = maintenance_rows(l, &[("rule 10".into(), 4), ("rule 20 (x)".into(), 5)]);
        assert_eq!(full[0].result, Verdict::Failed);
        assert!(full[0]
            .detail
            .starts_with("rule 20 (x) has 5 condition values"));
    }

    #[test]
    fn task_rows_and_exit_codes() {
        let good = TaskFacts {
            family: Ok("stage-migrate:3".into()),
            container: Ok(()),
            network: Some(Ok(())),
            logs: Ok("/ecs/x".into()),
        };
        let rows = task_rows("environments.stage.migration", "migration", &good);
        assert!(rows.iter().all(|r| r.result == Verdict::Ok), "{rows:?}");
        let missing = TaskFacts {
            family: Err("task definition family stage-migrate has no ACTIVE revision".into()),
            container: Err(String::new()),
            network: Some(Err("ECS service app/gone does not exist".into())),
            logs: Err(String::new()),
        };
        let rows = task_rows("environments.stage.migration", "migration", &missing);
        assert_eq!(rows.len(), 2);
        let report = Report { rows };
        let e = report.verdict("migrate").unwrap_err();
        assert!(e.is::<UsageError>(), "config at fault: exit 2");
        assert!(format!("{e}").contains("environments.stage.migration.family"));
        // A container that is not in the revision: one row says so (not a second about its logs), exit 2.
        let no_container = TaskFacts {
            family: Ok("stage-migrate:3".into()),
            container: Err("stage-migrate:3 has no container \"m\"".into()),
            network: None,
            logs: Err("no container".into()),
        };
        let rows = task_rows("environments.stage.migration", "migration", &no_container);
        let checks: Vec<&str> = rows.iter().map(|r| r.check.as_str()).collect();
        assert_eq!(checks, ["migration task definition", "migration container"]);
        let e = Report { rows }.verdict("migrate").unwrap_err();
        assert!(e.is::<UsageError>(), "config at fault: exit 2");
        let aws = Report {
            rows: image_rows(&[(wanted("r/a:b"), ImageState::Missing("x".into()))]),
        };
        assert!(!aws.verdict("deploy").unwrap_err().is::<UsageError>());
        assert!(Report::default().verdict("deploy").is_ok());
    }
}
