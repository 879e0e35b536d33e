//! `check-config`: validate the environments file. Every error names the key and the fix (exit 2).

use serde::Serialize;

use crate::config::Config;
use crate::error::UsageError;
use crate::github::runner::{md_table, text_table, Outcome};

#[derive(Debug, Clone, Serialize)]
pub struct ConfigChecked {
    pub config: String,
    pub environments: Vec<EnvSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvSummary {
    pub name: String,
    pub region: String,
    pub cluster: String,
    pub services: Vec<String>,
    pub migration: Option<String>,
    pub database: Option<String>,
    pub maintenance: bool,
}

/// Validates the file (and, if given, that the environment exists). Makes no AWS call.
pub fn run(path: &std::path::Path, only: Option<&str>) -> Result<ConfigChecked, UsageError> {
    let config = Config::load(path)?;
    if let Some(name) = only {
        config.environment(name)?;
    }
    let environments = config
        .environments
        .values()
        .filter(|e| only.is_none_or(|n| n == e.name))
        .map(|e| EnvSummary {
            name: e.name.clone(),
            region: e.region.clone(),
            cluster: e.cluster.clone(),
            services: e.services.iter().map(|s| s.name.clone()).collect(),
            migration: e.migration.as_ref().map(|m| m.family.clone()),
            database: e
                .database
                .as_ref()
                .map(|d| format!("{:?} {}", d.kind, d.identifier).to_lowercase()),
            maintenance: e.maintenance.is_some(),
        })
        .collect();
    Ok(ConfigChecked {
        config: path.display().to_string(),
        environments,
    })
}

impl ConfigChecked {
    fn rows(&self) -> Vec<Vec<String>> {
        self.environments
            .iter()
            .map(|e| {
                vec![
                    e.name.clone(),
                    e.region.clone(),
                    e.cluster.clone(),
                    e.services.join(", "),
                    e.migration.clone().unwrap_or_else(|| "-".into()),
                    e.database.clone().unwrap_or_else(|| "-".into()),
                    if e.maintenance { "yes" } else { "no" }.into(),
                ]
            })
            .collect()
    }
}

const HEADER: [&str; 7] = [
    "environment",
    "region",
    "cluster",
    "services",
    "migration",
    "database",
    "maintenance",
];

impl Outcome for ConfigChecked {
    fn ok(&self) -> bool {
        true
    }
    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![(
            "environments",
            self.environments
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )]
    }
    fn summary(&self) -> String {
        format!(
            "### Config {} is valid\n\n{}",
            crate::text::md_code(&self.config.to_string()),
            md_table(&HEADER, &self.rows())
        )
    }
    fn text(&self) -> String {
        format!(
            "{} is valid\n\n{}",
            self.config,
            text_table(&HEADER, &self.rows())
        )
    }
}
