//! The names and tags of a database restore (phase `restore`), shared with what grants its permissions
//! (`iam-policy`): the restored database's temporary name, the kept original's name, and the tags that record the
//! restore on both.

/// Role of a resource in a restore: `original` or `restored`.
pub const ROLE: &str = "deploy-action:restore";
/// The snapshot the restore is from.
pub const SNAPSHOT: &str = "deploy-action:restore-snapshot";
/// UTC `yyyymmdd-hhmmss` of the restore's start: names the kept original.
pub const STAMP: &str = "deploy-action:restore-stamp";
/// The original cluster's instances, comma-separated (Aurora).
pub const MEMBERS: &str = "deploy-action:restore-members";
/// The step about to be taken on this resource (recorded before it is taken).
pub const STEP: &str = "deploy-action:restore-step";

/// The suffix of the restored resource until it takes the original's name.
pub const TEMP_SUFFIX: &str = "-restoring";

/// Pure: `<name><suffix>`, the name cut so that the whole is a valid identifier of at most 63 characters.
pub fn derived(name: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len());
    let base = name[..name.len().min(room)].trim_end_matches('-');
    format!("{base}{suffix}")
}

/// Pure: the name the original is kept under.
pub fn kept_name(name: &str, stamp: &str) -> String {
    derived(name, &format!("-before-restore-{stamp}"))
}
