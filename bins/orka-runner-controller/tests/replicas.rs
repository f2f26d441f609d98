//! Replicas × scale sets end to end: three controller processes configured with the same
//! four scale sets share them through GitHub's session lock. Every scale set is served by
//! exactly one replica, all replicas are Ready, a kill -9 moves the dead replica's scale
//! sets once their stale sessions expire, and a SIGTERM hands over within seconds (the
//! hand-over time is printed, not asserted).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{ControllerProcess, PATIENCE, Scenario, eventually};

const SCALE_SETS: [&str; 4] = ["ssa", "ssb", "ssc", "ssd"];

fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let listeners: Vec<_> = (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap())
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().ok()?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await.ok()?.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The scale sets a replica's `/readyz` reports active; `None` unless it answers 200.
async fn active_on(addr: SocketAddr) -> Option<Vec<String>> {
    let (status, body) = get(addr, "/readyz").await?;
    (status == 200).then(|| {
        body.lines().filter_map(|l| l.strip_suffix(": active, serving")).map(str::to_owned).collect()
    })
}

/// Waits until, over `replicas` (all Ready), every scale set is active on exactly one;
/// returns scale set → replica index.
async fn served_exactly_once(
    what: &str,
    replicas: &[(usize, SocketAddr)],
) -> Result<BTreeMap<String, usize>> {
    eventually(what, PATIENCE, || async {
        let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, addr) in replicas {
            for scale_set in active_on(*addr).await? {
                owners.entry(scale_set).or_default().push(*index);
            }
        }
        let complete = SCALE_SETS.iter().all(|s| owners.get(*s).is_some_and(|o| o.len() == 1));
        complete.then(|| owners.into_iter().map(|(s, o)| (s, o[0])).collect())
    })
    .await
}

fn explain(e: anyhow::Error, controllers: &[&ControllerProcess]) -> anyhow::Error {
    let logs: Vec<String> = controllers.iter().map(|c| c.log()).collect();
    anyhow::anyhow!("{e:#}\n--- controller logs ---\n{}", logs.join("\n---\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_four_scale_sets_and_hand_them_over() -> Result<()> {
    let s = Scenario::start().await?;
    for name in SCALE_SETS {
        s.world.github.create_scale_set(name, &[name]);
    }
    let runners = SCALE_SETS.map(|name| format!(r#"{{"name":"{name}","id":1}}"#)).join(",");
    let runners = format!("[{runners}]");
    let addrs: [SocketAddr; 3] = free_addrs();
    let mut replicas = Vec::new();
    for (index, addr) in addrs.iter().enumerate() {
        let addr = addr.to_string();
        replicas.push(s.controller(
            &format!("replica-{index}.log"),
            &[("RUNNERS", runners.as_str()), ("ENABLE_METRICS", "true"), ("METRICS_ADDR", addr.as_str())],
        )?);
    }
    let outcome = async {
        let all: Vec<(usize, SocketAddr)> = addrs.iter().copied().enumerate().collect();
        let owners =
            served_exactly_once("every scale set served by exactly one of three replicas", &all).await?;
        println!("initial assignment (scale set → replica): {owners:?}");

        // kill -9: the dead replica's sessions stay until GitHub expires them.
        let killed = owners["ssa"];
        replicas[killed].kill9().await?;
        let left: Vec<(usize, SocketAddr)> = all.iter().copied().filter(|(i, _)| *i != killed).collect();
        let owners = served_exactly_once("the killed replica's scale sets move to the others", &left).await?;
        println!("after kill -9 of replica {killed}: {owners:?}");

        // SIGTERM: the leaving replica deletes its sessions; a standby takes each within seconds.
        let leaving = owners["ssa"];
        let moving: Vec<&String> = owners.iter().filter(|(_, r)| **r == leaving).map(|(s, _)| s).collect();
        let started = tokio::time::Instant::now();
        replicas[leaving].sigterm()?;
        let last: Vec<(usize, SocketAddr)> = left.iter().copied().filter(|(i, _)| *i != leaving).collect();
        let owners =
            served_exactly_once("the SIGTERMed replica's scale sets move to the last one", &last).await?;
        let hand_over = started.elapsed();
        println!("SIGTERM hand-over of {moving:?} from replica {leaving}: {hand_over:?}; now {owners:?}");
        let status = replicas[leaving].wait_exit(Duration::from_secs(60)).await?;
        anyhow::ensure!(status.success(), "SIGTERM ends a replica with 0: {status:?}");
        Ok(())
    }
    .await;
    let refs: Vec<&ControllerProcess> = replicas.iter().collect();
    outcome.map_err(|e| explain(e, &refs))
}
