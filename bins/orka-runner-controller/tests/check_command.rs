//! `check` against the simulated world: a readable pass/fail report, exit 0 only when
//! everything passes.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::Result;
use support::{ControllerProcess, Scenario};

async fn check(s: &Scenario, log: &str, overrides: &[(&str, &str)]) -> Result<(i32, String)> {
    let mut env = s.world.controller_env();
    env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut process = ControllerProcess::spawn(s.dir.path(), log, &env, &["check"])?;
    let status = process.wait_exit(Duration::from_secs(90)).await?;
    Ok((status.code().unwrap_or(-1), process.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_against_a_healthy_world_and_names_what_fails() -> Result<()> {
    let s = Scenario::start().await?;
    let (code, report) = check(&s, "check-ok.log", &[]).await?;
    anyhow::ensure!(code == 0, "exit {code}:\n{report}");
    anyhow::ensure!(report.contains("PASS  configuration"), "{report}");
    anyhow::ensure!(report.contains("checks passed"), "{report}");
    anyhow::ensure!(!report.contains("FAIL") && !report.contains("SKIP"), "{report}");

    let (code, report) = check(&s, "check-bad-token.log", &[("ORKA_TOKEN", "not-the-token")]).await?;
    anyhow::ensure!(code == 1, "a rejected Orka token fails the check (exit {code}):\n{report}");
    anyhow::ensure!(report.contains("FAIL"), "{report}");
    anyhow::ensure!(!report.contains("not-the-token"), "the token leaked:\n{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_within_its_deadline_when_github_never_answers() -> Result<()> {
    use orka_runner_controller::check::Outcome;
    use orka_runner_controller::config::{EnvFile, Sources, load};
    use testkit::github::{Endpoint, Fault};

    let s = Scenario::start().await?;
    s.world.github.inject(Fault::Delay { endpoint: Endpoint::Any, delay_ms: 600_000, times: 1_000 });
    let sources = Sources {
        environment: s.world.controller_env().into_iter().collect(),
        env_file: EnvFile::Skip,
        config_file: None,
    };
    let config = load(&sources)?;
    let deadline = Duration::from_secs(2);
    // The bound is enforced by `check_within`; the test only bounds its wait generously.
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        orka_runner_controller::commands::check_within(&config, deadline),
    )
    .await??;
    anyhow::ensure!(!report.passed(), "{report}");
    let last = report.items.last().expect("items");
    anyhow::ensure!(
        last.name == "deadline"
            && matches!(&last.outcome, Outcome::Fail(why) if why.contains("did not finish within 2s")),
        "{report}"
    );
    anyhow::ensure!(report.items[0].name == "configuration", "what finished is still reported: {report}");
    Ok(())
}
