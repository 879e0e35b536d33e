//! Building a new revision: the configured containers get the release's image, and with `ssm-path` the secrets
//! named by SSM parameters, as references (valueFrom ARNs, never values). Shared by deploy (each core service),
//! preview (the review app's revision) and the one-off tasks (migration, `run`, [`crate::domain::task`]). A secret
//! whose parameter was deleted from `ssm-path` leaves the next revision ([`removed`]), and the plan says so.

use std::collections::{BTreeMap, HashSet};

use anyhow::{anyhow, Context, Result};
use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, Secret};

use crate::aws::ssm::{self, ParameterRef};
use crate::config::Environment;

/// The environment's secrets: (secret name, valueFrom) of the SSM parameters under `ssm-path`, and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmSecrets {
    pub path: String,
    pub secrets: Vec<(String, String)>,
}

/// What changes in a new revision: image per configured container, and secrets from SSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionChange {
    /// (container name, new image)
    pub images: Vec<(String, String)>,
    /// The secrets for the configured containers, when `ssm-path` is set.
    pub secrets: Option<SsmSecrets>,
}

/// Pure: the container definitions of the new revision. The configured containers get their new image and the
/// secrets merged over their own ([`merge`]). Every other container and every other field stays exactly as it was.
pub fn release_containers(
    containers: &[ContainerDefinition],
    release: &RevisionChange,
) -> Vec<ContainerDefinition> {
    containers
        .iter()
        .map(|c| {
            let name = c.name().unwrap_or_default();
            let Some((_, image)) = release.images.iter().find(|(n, _)| n == name) else {
                return c.clone();
            };
            let mut c = match &release.secrets {
                Some(ssm) => merge(c, ssm),
                None => c.clone(),
            };
            c.image = Some(image.clone());
            c
        })
        .collect()
}

/// Pure: the parameter name a `valueFrom` refers to: the name itself (`/app/stage/DB`) or the name inside a
/// parameter ARN (`arn:aws:ssm:r:a:parameter/app/stage/DB`); `None` for anything else (Secrets Manager).
pub fn parameter_name(value_from: &str) -> Option<String> {
    if let Some(rest) = value_from.strip_prefix("arn:") {
        let (_, tail) = rest.split_once(":parameter")?;
        let name = tail.trim_start_matches('/');
        return (!name.is_empty()).then(|| format!("/{name}"));
    }
    value_from.starts_with('/').then(|| value_from.to_string())
}

/// Pure: whether a parameter name lies under `path` (whole segments: `/app/stage-2/X` is not under `/app/stage`).
fn under(name: &str, path: &str) -> bool {
    let dir = format!("{}/", path.trim_end_matches('/'));
    name.starts_with(&dir)
}

/// Pure: the container's secrets whose parameter lies under the path but is no longer there (deleted): (secret name,
/// parameter name). They leave the next revision; secrets from elsewhere (another path, Secrets Manager) stay.
pub fn removed(c: &ContainerDefinition, ssm: &SsmSecrets) -> Vec<(String, String)> {
    let present: HashSet<&str> = ssm.secrets.iter().map(|(n, _)| n.as_str()).collect();
    c.secrets()
        .iter()
        .filter(|s| !present.contains(s.name()))
        .filter_map(|s| {
            let param = parameter_name(s.value_from())?;
            under(&param, &ssm.path).then(|| (s.name().to_string(), param))
        })
        .collect()
}

/// Pure: the container with the secrets merged over its own (same name: replaced in place; new: appended in name
/// order), the ones whose parameter left the path removed, and a plaintext `environment` entry named like a secret
/// dropped, so the value only ever comes from SSM. Every other field stays as it was.
pub fn merge(c: &ContainerDefinition, ssm: &SsmSecrets) -> ContainerDefinition {
    let gone: Vec<String> = removed(c, ssm).into_iter().map(|(n, _)| n).collect();
    let mut c = c.clone();
    let mut merged: Vec<Secret> = c.secrets.take().unwrap_or_default();
    merged.retain(|s| !gone.iter().any(|g| g == s.name()));
    let mut added: Vec<&(String, String)> = vec![];
    for s in &ssm.secrets {
        match merged.iter_mut().find(|m| m.name() == s.0) {
            Some(existing) => existing.value_from = s.1.clone(),
            None => added.push(s),
        }
    }
    added.sort();
    for (n, v) in added {
        merged.push(
            Secret::builder()
                .name(n)
                .value_from(v)
                .build()
                .expect("name and valueFrom are set"),
        );
    }
    let names: HashSet<&str> = merged.iter().map(|s| s.name()).collect();
    if let Some(env) = c.environment.as_mut() {
        env.retain(|kv: &KeyValuePair| !kv.name().is_some_and(|n| names.contains(n)));
    }
    c.secrets = Some(merged);
    c
}

/// Pure: one plan line when secrets leave a container because their parameters were deleted from the path.
pub fn removed_line(who: &str, c: &ContainerDefinition, ssm: &SsmSecrets) -> Option<String> {
    let gone = removed(c, ssm);
    if gone.is_empty() {
        return None;
    }
    Some(format!(
        "{who}: secret(s) removed from the next revision, their parameters are no longer under ssm-path {}: {}",
        ssm.path,
        gone.iter()
            .map(|(n, p)| format!("{n} ({p})"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Pure: SSM parameters as secrets, named by the last path segment. Two parameters with the same last segment are an
/// error naming both (one would silently hide the other).
pub fn secrets_from(params: &[ParameterRef]) -> Result<Vec<(String, String)>, String> {
    let mut by_name: BTreeMap<String, &ParameterRef> = BTreeMap::new();
    for p in params {
        let short = p.name.rsplit('/').next().unwrap_or(&p.name).to_string();
        if let Some(other) = by_name.insert(short.clone(), p) {
            return Err(format!(
                "SSM parameters {} and {} would both become the secret {short}; rename one",
                other.name, p.name
            ));
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(n, p)| (n, p.arn.clone()))
        .collect())
}

/// The environment's SSM parameters under `ssm-path` as secrets, or `None` without `ssm-path`. Only names and ARNs
/// are read (no decryption), so no secret value ever reaches this process.
pub async fn ssm_secrets(
    ssm_client: &aws_sdk_ssm::Client,
    env: &Environment,
) -> Result<Option<SsmSecrets>> {
    let Some(path) = &env.ssm_path else {
        return Ok(None);
    };
    let params = ssm::parameters_by_path(ssm_client, path)
        .await
        .with_context(|| {
            format!(
                "reading SSM parameters under {path} (ssm-path of environment {})",
                env.name
            )
        })?;
    let secrets = secrets_from(&params).map_err(|e| anyhow!("{e} (under ssm-path {path})"))?;
    tracing::info!(
        "{} SSM parameter(s) under {path} become secrets",
        secrets.len()
    );
    Ok(Some(SsmSecrets {
        path: path.clone(),
        secrets,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::LogConfiguration;

    fn container(name: &str, image: &str) -> ContainerDefinition {
        ContainerDefinition::builder()
            .name(name)
            .image(image)
            .essential(true)
            .memory(512)
            .environment(
                KeyValuePair::builder()
                    .name("NODE_ENV")
                    .value("production")
                    .build(),
            )
            .environment(
                KeyValuePair::builder()
                    .name("DATABASE_URL")
                    .value("plaintext")
                    .build(),
            )
            .secrets(
                Secret::builder()
                    .name("API_KEY")
                    .value_from("arn:old")
                    .build()
                    .unwrap(),
            )
            .log_configuration(
                LogConfiguration::builder()
                    .log_driver(aws_sdk_ecs::types::LogDriver::Awslogs)
                    .options("awslogs-group", "/ecs/x")
                    .build()
                    .unwrap(),
            )
            .build()
    }

    fn secret(n: &str, v: &str) -> Secret {
        Secret::builder().name(n).value_from(v).build().unwrap()
    }

    #[test]
    fn parameter_names_from_value_from() {
        let cases = [
            ("/app/stage/DB", Some("/app/stage/DB")),
            (
                "arn:aws:ssm:eu-central-1:123456789012:parameter/app/stage/DB",
                Some("/app/stage/DB"),
            ),
            (
                "arn:aws:secretsmanager:eu-central-1:123456789012:secret:db-AbCdEf",
                None,
            ),
            ("DB", None),
        ];
        for (v, want) in cases {
            assert_eq!(parameter_name(v).as_deref(), want, "{v}");
        }
    }

    #[test]
    fn a_parameter_gone_from_the_path_is_removed_others_kept() {
        let arn = |n: &str| format!("arn:aws:ssm:r:1:parameter/app/stage/{n}");
        let c = ContainerDefinition::builder()
            .name("migrate")
            .secrets(secret("DB", &arn("DB")))
            .secrets(secret("OLD", &arn("OLD")))
            .secrets(secret(
                "SHARED",
                "arn:aws:ssm:r:1:parameter/app/shared/SHARED",
            ))
            .secrets(secret("SM", "arn:aws:secretsmanager:r:1:secret:x"))
            .environment(KeyValuePair::builder().name("NEW").value("plain").build())
            .build();
        let ssm = SsmSecrets {
            path: "/app/stage/".into(),
            secrets: vec![("DB".into(), arn("DB")), ("NEW".into(), arn("NEW"))],
        };
        assert_eq!(
            removed(&c, &ssm),
            vec![("OLD".into(), "/app/stage/OLD".into())]
        );
        let after = merge(&c, &ssm);
        let names: Vec<&str> = after.secrets().iter().map(|s| s.name()).collect();
        assert_eq!(names, vec!["DB", "SHARED", "SM", "NEW"]);
        assert!(
            after.environment().is_empty(),
            "the plaintext NEW is dropped"
        );
        assert_eq!(
            removed_line("migration", &c, &ssm).unwrap(),
            "migration: secret(s) removed from the next revision, their parameters are no longer under ssm-path /app/stage/: OLD (/app/stage/OLD)"
        );
        assert_eq!(removed_line("migration", &after, &ssm), None);
        assert_eq!(merge(&after, &ssm), after, "merging again changes nothing");
    }

    #[test]
    fn the_path_matches_whole_segments() {
        let cases = [
            ("/app/stage/DB", "/app/stage", true),
            ("/app/stage/x/DB", "/app/stage/", true),
            ("/app/stage-2/DB", "/app/stage", false),
            ("/app/stageDB", "/app/stage", false),
        ];
        for (name, path, want) in cases {
            assert_eq!(under(name, path), want, "{name} under {path}");
        }
    }

    #[test]
    fn only_the_configured_containers_change() {
        let before = vec![
            container("core", "repo:core-v1"),
            container("sidecar", "ghcr.io/x:3.4"),
        ];
        let release = RevisionChange {
            images: vec![("core".into(), "repo:core-v2".into())],
            secrets: None,
        };
        let after = release_containers(&before, &release);
        assert_eq!(after[1], before[1], "the sidecar is untouched");
        assert_eq!(after[0].image(), Some("repo:core-v2"));
        let mut expected = before[0].clone();
        expected.image = Some("repo:core-v2".into());
        assert_eq!(
            after[0], expected,
            "every other field of the container is kept"
        );
        let same = RevisionChange {
            images: vec![("core".into(), "repo:core-v1".into())],
            secrets: None,
        };
        assert_eq!(
            release_containers(&before, &same),
            before,
            "same image: nothing changes"
        );
    }

    #[test]
    fn ssm_secrets_merge_over_existing_and_replace_plaintext() {
        let before = vec![container("core", "repo:core-v1"), container("sidecar", "x")];
        let secrets = vec![
            (
                "DATABASE_URL".to_string(),
                "arn:aws:ssm:r:1:parameter/app/stage/DATABASE_URL".to_string(),
            ),
            (
                "API_KEY".to_string(),
                "arn:aws:ssm:r:1:parameter/app/stage/API_KEY".to_string(),
            ),
        ];
        let release = RevisionChange {
            images: vec![("core".into(), "repo:core-v2".into())],
            secrets: Some(SsmSecrets {
                path: "/app/stage".into(),
                secrets,
            }),
        };
        let after = release_containers(&before, &release);
        let core = &after[0];
        let s: Vec<(&str, &str)> = core
            .secrets()
            .iter()
            .map(|s| (s.name(), s.value_from()))
            .collect();
        assert_eq!(
            s,
            vec![
                ("API_KEY", "arn:aws:ssm:r:1:parameter/app/stage/API_KEY"),
                (
                    "DATABASE_URL",
                    "arn:aws:ssm:r:1:parameter/app/stage/DATABASE_URL"
                ),
            ]
        );
        let env: Vec<&str> = core.environment().iter().filter_map(|e| e.name()).collect();
        assert_eq!(
            env,
            vec!["NODE_ENV"],
            "a plaintext variable named like a secret is dropped"
        );
        assert_eq!(
            after[1], before[1],
            "containers not configured get no secrets"
        );
        assert_eq!(
            release_containers(&after, &release),
            after,
            "applying it again changes nothing"
        );
    }

    #[test]
    fn ssm_parameters_become_secret_names_and_clashes_are_errors() {
        let p = |n: &str| ParameterRef {
            name: n.into(),
            arn: format!("arn:aws:ssm:r:1:parameter{n}"),
        };
        let ok = secrets_from(&[p("/app/stage/B"), p("/app/stage/nested/A")]).unwrap();
        assert_eq!(
            ok,
            vec![
                (
                    "A".to_string(),
                    "arn:aws:ssm:r:1:parameter/app/stage/nested/A".to_string()
                ),
                (
                    "B".to_string(),
                    "arn:aws:ssm:r:1:parameter/app/stage/B".to_string()
                ),
            ]
        );
        let e = secrets_from(&[p("/app/stage/A"), p("/app/stage/x/A")]).unwrap_err();
        assert!(
            e.contains("/app/stage/A") && e.contains("/app/stage/x/A"),
            "{e}"
        );
    }
}
