//! Issue 5: phases `deploy` and `rollback` against the local AWS.

use serde_json::{json, Value};

use crate::support::TestContext;

const THREE: &[&str] = &["--services", "core,workers,scheduler"];

async fn service(ctx: &TestContext, name: &str) -> aws_sdk_ecs::types::Service {
    let out = ctx.ecs().await.describe_services().cluster("app-stage").services(name).send().await.unwrap();
    out.services()[0].clone()
}

async fn task_definition(ctx: &TestContext, arn: &str) -> (aws_sdk_ecs::types::TaskDefinition, Vec<(String, String)>) {
    let out = ctx
        .ecs()
        .await
        .describe_task_definition()
        .task_definition(arn)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let tags = out.tags().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect();
    (out.task_definition().unwrap().clone(), tags)
}

#[tokio::test]
async fn deploy_rolls_out_a_new_version_on_three_services() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", THREE);
    let r = ctx.action(&[("phase", "deploy"), ("environment", "stage"), ("config", "deploy.toml"), ("version", "v1.1.0")]).await;
    println!("{}\n{}\n{}", r.stdout, r.stderr, r.summary);
    r.assert_code(0);
}
