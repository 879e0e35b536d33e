//! What a new task definition revision changes against the current one, field by field, for the plan of `deploy`
//! (per service) and of `migrate`/`run` (the one-off revision).
//!
//! The new revision is always the current one re-registered with changed container definitions (see
//! [`crate::aws::ecs::register_input_from`]), so the diff is over the containers: each container's image, its SSM
//! secrets added, removed or pointed elsewhere, and plaintext environment entries dropped. Anything else that
//! differs in a container is named too ([`RevisionDiff::other`]), so "nothing else changes" is only ever said when it
//! was checked.

use aws_sdk_ecs::types::ContainerDefinition;
use serde::Serialize;

/// One container's changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerDiff {
    pub name: String,
    /// (old, new) image, when it changes.
    pub image: Option<(String, String)>,
    pub secrets_added: Vec<String>,
    pub secrets_removed: Vec<String>,
    /// Secrets whose `valueFrom` changes.
    pub secrets_repointed: Vec<String>,
    /// Plaintext `environment` entries dropped (a secret of that name takes their place).
    pub environment_removed: Vec<String>,
}

/// The field diff of a new revision against the current one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RevisionDiff {
    /// Containers that change, in the task definition's order.
    pub containers: Vec<ContainerDiff>,
    /// Containers added or removed, or changed in another field than the ones above (never expected: the plan
    /// names them rather than hiding them).
    pub other: Vec<String>,
}

fn secrets(c: &ContainerDefinition) -> Vec<(String, String)> {
    c.secrets()
        .iter()
        .map(|s| (s.name().to_string(), s.value_from().to_string()))
        .collect()
}

fn env_names(c: &ContainerDefinition) -> Vec<String> {
    c.environment()
        .iter()
        .filter_map(|kv| kv.name().map(str::to_string))
        .collect()
}

/// Pure: the diff of `new` against `current` (container definitions of the two revisions).
pub fn diff(current: &[ContainerDefinition], new: &[ContainerDefinition]) -> RevisionDiff {
    let mut out = RevisionDiff::default();
    for old in current {
        let name = old.name().unwrap_or_default();
        let Some(n) = new.iter().find(|c| c.name() == old.name()) else {
            out.other.push(format!("container {name} removed"));
            continue;
        };
        let (os, ns) = (secrets(old), secrets(n));
        let (oe, ne) = (env_names(old), env_names(n));
        let d = ContainerDiff {
            name: name.to_string(),
            image: (old.image() != n.image()).then(|| {
                (
                    old.image().unwrap_or_default().to_string(),
                    n.image().unwrap_or_default().to_string(),
                )
            }),
            secrets_added: ns
                .iter()
                .filter(|(k, _)| !os.iter().any(|(o, _)| o == k))
                .map(|(k, _)| k.clone())
                .collect(),
            secrets_removed: os
                .iter()
                .filter(|(k, _)| !ns.iter().any(|(o, _)| o == k))
                .map(|(k, _)| k.clone())
                .collect(),
            secrets_repointed: ns
                .iter()
                .filter(|(k, v)| os.iter().any(|(o, ov)| o == k && ov != v))
                .map(|(k, _)| k.clone())
                .collect(),
            environment_removed: oe.iter().filter(|k| !ne.contains(k)).cloned().collect(),
        };
        // Everything else must be equal: put the compared fields of `new` back to the old values and compare.
        let mut rest = n.clone();
        rest.image = old.image.clone();
        rest.secrets = old.secrets.clone();
        rest.environment = old.environment.clone();
        if &rest != old {
            out.other
                .push(format!("container {name}: other fields change"));
        }
        if d != (ContainerDiff {
            name: name.to_string(),
            ..Default::default()
        }) {
            out.containers.push(d);
        }
    }
    for n in new {
        if !current.iter().any(|c| c.name() == n.name()) {
            out.other
                .push(format!("container {} added", n.name().unwrap_or_default()));
        }
    }
    out
}

impl RevisionDiff {
    /// One line per change, then the line that says what stays: `container core: image a:1 → a:2`, ...,
    /// `nothing else changes: ...`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.containers {
            if let Some((old, new)) = &c.image {
                lines.push(format!("container {}: image {old} → {new}", c.name));
            }
            let list = |v: &[String]| v.join(", ");
            if !c.secrets_added.is_empty() {
                lines.push(format!(
                    "container {}: secrets added: {}",
                    c.name,
                    list(&c.secrets_added)
                ));
            }
            if !c.secrets_removed.is_empty() {
                lines.push(format!(
                    "container {}: secrets removed: {}",
                    c.name,
                    list(&c.secrets_removed)
                ));
            }
            if !c.secrets_repointed.is_empty() {
                lines.push(format!(
                    "container {}: secrets read from another parameter: {}",
                    c.name,
                    list(&c.secrets_repointed)
                ));
            }
            if !c.environment_removed.is_empty() {
                lines.push(format!(
                    "container {}: plaintext environment removed (now secrets): {}",
                    c.name,
                    list(&c.environment_removed)
                ));
            }
        }
        lines.extend(self.other.iter().cloned());
        if self.other.is_empty() {
            lines.push(if self.containers.is_empty() {
                "nothing changes".into()
            } else {
                "nothing else changes: the other containers, and every other field of the task definition (cpu, memory, roles, network mode, volumes, log configuration, ...), are copied as they are".into()
            });
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{KeyValuePair, Secret};

    fn container(
        name: &str,
        image: &str,
        secrets: &[(&str, &str)],
        env: &[&str],
    ) -> ContainerDefinition {
        let mut b = ContainerDefinition::builder()
            .name(name)
            .image(image)
            .memory(512);
        for (k, v) in secrets {
            b = b.secrets(Secret::builder().name(*k).value_from(*v).build().unwrap());
        }
        for k in env {
            b = b.environment(KeyValuePair::builder().name(*k).value("x").build());
        }
        b.build()
    }

    #[test]
    fn images_and_secrets_are_named_and_the_rest_said_to_stay() {
        let current = vec![
            container(
                "core",
                "app:core-v1",
                &[("A", "arn:a"), ("B", "arn:b"), ("OLD", "arn:old")],
                &["DB_PASSWORD", "NODE_ENV"],
            ),
            container("sidecar", "nudenet:3.4", &[], &[]),
        ];
        let new = vec![
            container(
                "core",
                "app:core-v2",
                &[("A", "arn:a"), ("B", "arn:b2"), ("DB_PASSWORD", "arn:db")],
                &["NODE_ENV"],
            ),
            container("sidecar", "nudenet:3.4", &[], &[]),
        ];
        let d = diff(&current, &new);
        assert_eq!(
            d.lines(),
            vec![
                "container core: image app:core-v1 → app:core-v2",
                "container core: secrets added: DB_PASSWORD",
                "container core: secrets removed: OLD",
                "container core: secrets read from another parameter: B",
                "container core: plaintext environment removed (now secrets): DB_PASSWORD",
                "nothing else changes: the other containers, and every other field of the task definition (cpu, memory, roles, network mode, volumes, log configuration, ...), are copied as they are",
            ]
        );
    }

    #[test]
    fn any_other_change_is_named_instead_of_nothing_else() {
        let current = vec![container("core", "app:v1", &[], &[])];
        let mut changed = container("core", "app:v2", &[], &[]);
        changed.memory = Some(1024);
        let d = diff(&current, &[changed, container("extra", "x:1", &[], &[])]);
        let lines = d.lines();
        assert!(
            lines.contains(&"container core: other fields change".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"container extra added".to_string()),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("nothing")), "{lines:?}");
        assert_eq!(diff(&current, &current).lines(), vec!["nothing changes"]);
    }
}
