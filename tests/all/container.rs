//! Issue 18: the container, proven without Docker. The Dockerfile's final stage is read here and turned into a root
//! directory holding exactly what it copies (the static binary and the CA bundle); the static musl binary is then
//! run in it the way the runner runs a container action: an otherwise empty root in a private mount namespace
//! (`unshare --mount --root`), working directory `/github/workspace`, `HOME=/github/home`, `GITHUB_OUTPUT` and
//! `GITHUB_STEP_SUMMARY` under `/github/file_commands`, every input of action.yml as `INPUT_<NAME>` with hyphens
//! kept (its default when the step does not set it), reaching the local AWS.
//!
//! `container_contract` needs root, `unshare` and the musl binary: `scripts/container-test` builds it and runs this
//! test with `DEPLOY_ACTION_CONTAINER_BINARY` set (scripts/test does). The Dockerfile check runs everywhere.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::{parse_outputs, repo, TestContext, REGION};

/// The final stage of the Dockerfile: where it puts which file, its ENV and its ENTRYPOINT.
#[derive(Debug, PartialEq, Eq)]
struct FinalStage {
    base: String,
    /// (source stage, source path, destination path)
    copies: Vec<(String, String, String)>,
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    /// Any other instruction (WORKDIR, USER, RUN, ...): a container action must not need them.
    other: Vec<String>,
}

fn final_stage(dockerfile: &str) -> FinalStage {
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM line");
    let mut stage = FinalStage {
        base: lines[start].trim_start_matches("FROM ").trim().to_string(),
        copies: vec![],
        env: vec![],
        entrypoint: vec![],
        other: vec![],
    };
    for l in &lines[start + 1..] {
        let (instr, rest) = l.split_once(' ').unwrap_or((l, ""));
        match instr {
            "COPY" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let from = parts[0]
                    .strip_prefix("--from=")
                    .expect("COPY --from=<stage>");
                assert_eq!(parts.len(), 3, "COPY --from=<stage> <src> <dest>: {l}");
                stage
                    .copies
                    .push((from.into(), parts[1].into(), parts[2].into()));
            }
            "ENV" => {
                let (k, v) = rest.split_once('=').expect("ENV KEY=value");
                stage.env.push((k.trim().into(), v.trim().into()));
            }
            "ENTRYPOINT" => {
                stage.entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT in exec form")
            }
            _ => stage.other.push(l.to_string()),
        }
    }
    stage
}

fn dockerfile() -> FinalStage {
    final_stage(&std::fs::read_to_string(repo().join("Dockerfile")).unwrap())
}

const BINARY: &str = "/usr/local/bin/deploy-action";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[test]
fn the_dockerfile_final_stage_is_the_layout_the_contract_test_runs() {
    let stage = dockerfile();
    assert_eq!(
        stage.base, "scratch",
        "an empty base: nothing but what the stage copies"
    );
    let dests: Vec<&str> = stage.copies.iter().map(|(_, _, d)| d.as_str()).collect();
    assert_eq!(dests, [CA_BUNDLE, BINARY]);
    assert_eq!(stage.entrypoint, [BINARY]);
    assert_eq!(
        stage.env,
        [("SSL_CERT_FILE".to_string(), CA_BUNDLE.to_string())]
    );
    assert!(stage.other.is_empty(), "no WORKDIR, USER or RUN in the final stage (the runner sets the working directory and runs as root): {:?}", stage.other);
}

/// action.yml's inputs with their defaults (`None`: no default), in file order.
fn action_inputs() -> Vec<(String, Option<String>)> {
    let text = std::fs::read_to_string(repo().join("action.yml")).unwrap();
    let mut inputs = vec![];
    let mut in_inputs = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_inputs = line.starts_with("inputs:");
            continue;
        }
        if !in_inputs {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                inputs.push((name.to_string(), None));
            }
        } else if let Some(d) = line.trim_start().strip_prefix("default: ") {
            let d = d.trim().trim_matches('\'').to_string();
            inputs.last_mut().expect("a default under an input").1 = Some(d);
        }
    }
    assert!(inputs.len() > 20, "{inputs:?}");
    inputs
}

/// The root the runner's `docker run` would see: the files the final stage copies, and the runner's mounts.
struct Container {
    root: PathBuf,
    binary: PathBuf,
}

impl Container {
    fn new(dir: &Path) -> Container {
        let binary = PathBuf::from(std::env::var_os("DEPLOY_ACTION_CONTAINER_BINARY").expect(
            "DEPLOY_ACTION_CONTAINER_BINARY: the static musl binary; scripts/container-test builds it and runs this test",
        ));
        let root = dir.join("root");
        for (_, src, dest) in &dockerfile().copies {
            let from = match src.as_str() {
                "/deploy-action" => binary.clone(),
                other => PathBuf::from(other),
            };
            let to = root.join(dest.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
        }
        for d in [
            "github/workspace/.github",
            "github/home",
            "github/file_commands",
            "github/workflow",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Container { root, binary }
    }

    /// Runs the image's entrypoint with the step's inputs, as the runner does; returns (exit code, stderr, outputs,
    /// summary).
    async fn run(
        &self,
        ctx: &TestContext,
        step: &[(&str, &str)],
        n: u32,
    ) -> (
        i32,
        String,
        std::collections::BTreeMap<String, String>,
        String,
    ) {
        let commands = self.root.join("github/file_commands");
        let (out, summary) = (format!("set_output_{n}"), format!("step_summary_{n}"));
        std::fs::write(commands.join(&out), "").unwrap();
        std::fs::write(commands.join(&summary), "").unwrap();
        let stage = dockerfile();
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.arg("--mount")
            .arg("--fork")
            .arg(format!("--root={}", self.root.display()))
            .arg("--wd=/github/workspace")
            .arg("--")
            .args(&stage.entrypoint)
            .env_clear()
            .envs(stage.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/github/home")
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", "/github/workspace")
            .env("GITHUB_OUTPUT", format!("/github/file_commands/{out}"))
            .env(
                "GITHUB_STEP_SUMMARY",
                format!("/github/file_commands/{summary}"),
            )
            .env("GITHUB_REPOSITORY", "acme/backend")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("RUNNER_OS", "Linux")
            .env("AWS_ENDPOINT_URL", &ctx.url)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Every input of action.yml: the step's value, else its default, else empty; the name upper-cased with
        // hyphens kept (the runner's AddInputsToEnvironment).
        for (name, default) in action_inputs() {
            let value = step
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .or(default.filter(|d| !d.contains("${{")))
                .unwrap_or_default();
            cmd.env(format!("INPUT_{}", name.to_uppercase()), value);
        }
        let res = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
            .await
            .expect("the container finished within 120 s")
            .expect("run unshare");
        let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
        let outputs = parse_outputs(&std::fs::read_to_string(commands.join(&out)).unwrap());
        let summary = std::fs::read_to_string(commands.join(&summary)).unwrap();
        (res.status.code().unwrap_or(-1), stderr, outputs, summary)
    }
}

#[tokio::test]
#[ignore = "needs root, unshare and the static musl binary: scripts/container-test (run by scripts/test)"]
async fn container_contract() {
    let ctx = TestContext::new().await;
    let seeded = ctx.seed("stage", &[]);
    let c = Container::new(ctx.path());
    // The binary is static: no program interpreter (a dynamic one could not start in the empty root).
    let elf = std::fs::read(&c.binary).unwrap();
    assert!(
        !elf.windows(b"/ld-linux".len()).any(|w| w == b"/ld-linux")
            && !elf.windows(b"ld-musl-".len()).any(|w| w == b"ld-musl-"),
        "{} is not static",
        c.binary.display()
    );
    // The repository checkout is the workspace; the config at the input's default path.
    std::fs::copy(&seeded, c.root.join("github/workspace/.github/deploy.toml")).unwrap();
    let no_github = ("github-deployments", "false");

    let (code, stderr, outputs, summary) = c
        .run(
            &ctx,
            &[("phase", "status"), ("environment", "stage"), no_github],
            1,
        )
        .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        outputs.get("result").map(String::as_str),
        Some("success"),
        "{outputs:?}"
    );
    assert_eq!(
        outputs.get("state").map(String::as_str),
        Some("running"),
        "{outputs:?}"
    );
    assert_eq!(
        outputs.get("version").map(String::as_str),
        Some("v1.0.0"),
        "{outputs:?}"
    );
    assert!(summary.contains("stage"), "{summary}");

    ctx.clear_calls().await;
    let step = [
        ("phase", "deploy"),
        ("environment", "stage"),
        ("version", "v1.1.0"),
        ("timeout-minutes", "5"),
        no_github,
    ];
    let (code, stderr, outputs, summary) = c.run(&ctx, &step, 2).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        outputs.get("result").map(String::as_str),
        Some("success"),
        "{outputs:?}"
    );
    assert_eq!(
        outputs.get("version").map(String::as_str),
        Some("v1.1.0"),
        "{outputs:?}"
    );
    assert_eq!(
        outputs.get("previous-version").map(String::as_str),
        Some("v1.0.0"),
        "{outputs:?}"
    );
    assert!(
        summary.contains("Deploy v1.1.0 to stage: done"),
        "{summary}"
    );
    assert!(
        ctx.mutating_calls()
            .await
            .iter()
            .any(|c| c == "ecs:UpdateService"),
        "it reached the local AWS"
    );

    // Bad input from the step: exit 2 with one annotation, as on a runner.
    let (code, stderr, _, _) = c.run(&ctx, &[("phase", "deplyo")], 3).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("::error title=deploy-action::input `phase`: unknown phase"),
        "{stderr}"
    );
}
