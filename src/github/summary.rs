//! Reusable pieces of a step summary: a mermaid flowchart of a phase's steps and a durations table.

use std::time::Duration;

use crate::github::runner::md_table;
use crate::wait::human;

/// A mermaid flowchart of the steps in order (green when ok, red when not) and a table of their durations.
/// GitHub renders mermaid blocks in step summaries. Empty for no steps.
///
/// ```
/// use std::time::Duration;
/// let md = deploy_action::github::summary::render_steps(&[
///     ("gates", Duration::from_millis(400), true),
///     ("deploy", Duration::from_secs(95), false),
/// ]);
/// assert!(md.contains("flowchart LR") && md.contains("| deploy | 1m 35s | ❌ |"));
/// ```
pub fn render_steps(steps: &[(&str, Duration, bool)]) -> String {
    if steps.is_empty() {
        return String::new();
    }
    let mut chart = String::from("```mermaid\nflowchart LR\n");
    for (i, (name, took, ok)) in steps.iter().enumerate() {
        let class = if *ok { "ok" } else { "failed" };
        chart.push_str(&format!(
            "  s{i}[\"{}<br/>{}\"]:::{class}\n",
            mermaid_text(name),
            human(*took)
        ));
    }
    if steps.len() > 1 {
        let ids: Vec<String> = (0..steps.len()).map(|i| format!("s{i}")).collect();
        chart.push_str(&format!("  {}\n", ids.join(" --> ")));
    }
    chart.push_str("  classDef ok fill:#dafbe1,stroke:#1a7f37,color:#1f2328\n");
    chart.push_str("  classDef failed fill:#ffebe9,stroke:#cf222e,color:#1f2328\n");
    chart.push_str("```\n");
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|(name, took, ok)| {
            vec![
                name.to_string(),
                human(*took),
                if *ok { "✅" } else { "❌" }.to_string(),
            ]
        })
        .collect();
    format!(
        "{chart}\n{}",
        md_table(&["Step", "Duration", "Result"], &rows)
    )
}

/// Text inside a quoted mermaid label: quotes and angle brackets as entities, one line.
fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
        .replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_render_as_a_chart_and_a_table() {
        let md = render_steps(&[
            ("gates", Duration::from_millis(400), true),
            ("deploy \"v1\" <core>", Duration::from_secs(95), false),
        ]);
        assert_eq!(
            md,
            "```mermaid\nflowchart LR\n  s0[\"gates<br/>0.4s\"]:::ok\n  s1[\"deploy #quot;v1#quot; #lt;core#gt;<br/>1m 35s\"]:::failed\n  s0 --> s1\n  classDef ok fill:#dafbe1,stroke:#1a7f37,color:#1f2328\n  classDef failed fill:#ffebe9,stroke:#cf222e,color:#1f2328\n```\n\n| Step | Duration | Result |\n|---|---|---|\n| gates | 0.4s | ✅ |\n| deploy \"v1\" &lt;core&gt; | 1m 35s | ❌ |\n"
        );
        assert_eq!(render_steps(&[]), "");
        let one = render_steps(&[("only", Duration::from_secs(1), true)]);
        assert!(!one.contains("-->"), "{one}");
    }
}
