//! The tags deploy-action puts on what it creates (snapshots, task definition revisions, one-off tasks), so that a
//! rerun of the same workflow run finds its own work, and clean-up never touches anything a person made.

/// `deploy-action` on everything this action created; retention deletes only what carries it.
pub const CREATED_BY: &str = "deploy-action:created-by";
/// The value of [`CREATED_BY`].
pub const CREATOR: &str = "deploy-action";
/// The version (release tag or label) the resource was made for.
pub const VERSION: &str = "deploy-action:version";
/// The workflow run that made it (`owner/repo/run-id`, see [`crate::inputs::GithubEnv::run_key`]).
pub const RUN: &str = "deploy-action:run";
/// The environment name from the config file.
pub const ENVIRONMENT: &str = "deploy-action:environment";
/// The RunTask client token of one launch: after an ambiguous RunTask failure, the task it may have started after
/// all is found by this tag.
pub const LAUNCH: &str = "deploy-action:launch";
/// The pull request number of a review app's resources (phase `preview`), with [`ENVIRONMENT`] naming its template.
pub const PREVIEW: &str = "deploy-action:preview";
/// The one-off task's name (`migration`, or a name from `[tasks]`).
pub const TASK: &str = "deploy-action:task";

/// The value of `key` among (key, value) pairs.
pub fn get<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The common tags: created-by, version, environment, and the run when there is one.
pub fn standard(environment: &str, version: &str, run: Option<&str>) -> Vec<(String, String)> {
    let mut tags = vec![
        (CREATED_BY.to_string(), CREATOR.to_string()),
        (VERSION.to_string(), version.to_string()),
        (ENVIRONMENT.to_string(), environment.to_string()),
    ];
    if let Some(run) = run {
        tags.push((RUN.to_string(), run.to_string()));
    }
    tags
}

/// Tag on the database: when the last migration task this action ran there stopped and which version it was
/// (`<seconds since the epoch> <version>`). Migrate needs a snapshot made after it.
pub const LAST_MIGRATION: &str = "deploy-action:last-migration";

/// Tag on the database: how long its last starts took (the last 3 at most, oldest first, whole seconds separated by
/// spaces: `251 248 260`), measured by this action from its StartDBInstance / StartDBCluster call to RDS's completion event ("DB instance started" / "DB cluster started"), or to the look that
/// saw the database available when RDS reported no such event. Paces the wait after the next start.
pub const START_SECONDS: &str = "deploy-action:start-seconds";
/// Tag on the database: how long its last stops took, as [`START_SECONDS`] (StopDBInstance / StopDBCluster to "DB
/// instance stopped" / "DB cluster stopped").
pub const STOP_SECONDS: &str = "deploy-action:stop-seconds";

/// The last migration recorded on the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastMigration {
    /// When its task had stopped (seconds since the epoch).
    pub ended: i64,
    pub version: String,
}

impl LastMigration {
    pub fn parse(value: &str) -> Option<LastMigration> {
        let (at, version) = value.trim().split_once(' ')?;
        Some(LastMigration {
            ended: at.parse().ok()?,
            version: version.trim().to_string(),
        })
    }

    pub fn value(&self) -> String {
        format!("{} {}", self.ended, self.version)
    }
}
