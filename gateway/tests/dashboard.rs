//! The dashboard in a real browser: headless Chromium loads `/dashboard` from a `gateway dev`
//! network, shows its live nodes, and shows a node killed with SIGKILL as offline. Without a
//! `chromium` binary (`.ci/run` installs Debian's) the test says so and passes.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::{client, data, free_port, node_pids, pid, spawn_dev, wait_cluster, wait_gone};
use rustix::process::{kill_process, Signal};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.exists())
        })
}

/// The page's DOM after its script has run (Chromium's virtual time lets the refreshes happen
/// without waiting in real time).
async fn render(browser: &Path, profile: &Path, url: &str) -> String {
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox", // the tests run as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--virtual-time-budget=8000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(url)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium rendered the page within 90 s")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_nodes_and_a_killed_one() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium on PATH (.ci/run installs Debian's `chromium`)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    let port = free_port();
    let env = [
        ("GATEWAY_HEARTBEAT", "1s"),
        ("GATEWAY_CENSUS_INTERVAL", "1s"),
    ];
    let mut gateway = spawn_dev(&dev, port, 6, &env);
    let cluster = wait_cluster(&dev).await;
    let s3 = client(&cluster);
    s3.create_bucket().bucket("shown").send().await.unwrap();
    s3.put_object()
        .bucket("shown")
        .key("obj")
        .body(ByteStream::from(data(5, 3_000_000)))
        .send()
        .await
        .unwrap();

    let admin = cluster["admin"]["address"].as_str().unwrap();
    let token = cluster["admin"]["token"].as_str().unwrap();
    let url = format!("{admin}/dashboard#token={token}");
    let ids: Vec<String> = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    let profile = dir.path().join("chromium");

    // Every node listed, online; the summary and the census are there.
    let mut dom = String::new();
    for _ in 0..10 {
        dom = render(&browser, &profile, &url).await;
        if dom.contains("segments at full health") {
            break;
        }
    }
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page never loaded:\n{dom}"
    );
    for id in &ids {
        assert!(
            dom.contains(&format!("data-node=\"{id}\" data-online=\"true\"")),
            "node {id} is not shown online:\n{dom}"
        );
    }
    assert!(dom.contains("6 of 6"), "{dom}");
    assert!(dom.contains("segments at full health"), "{dom}");

    // Without the token the page loads but shows only the login form and the refusal.
    let anonymous = render(
        &browser,
        &profile.with_extension("anon"),
        &format!("{admin}/dashboard"),
    )
    .await;
    assert!(
        anonymous.contains("the admin token was refused"),
        "{anonymous}"
    );
    assert!(!anonymous.contains("data-node="), "{anonymous}");

    // A killed node turns offline on the page.
    let nodes = node_pids(&cluster);
    let _ = kill_process(pid(nodes[0]), Signal::KILL);
    let mut shown_offline = false;
    for _ in 0..20 {
        dom = render(&browser, &profile, &url).await;
        if dom.contains(&format!("data-node=\"{}\" data-online=\"false\"", ids[0])) {
            shown_offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        shown_offline,
        "node {} is not shown offline:\n{dom}",
        ids[0]
    );
    assert!(dom.contains("5 of 6"), "{dom}");

    let _ = kill_process(pid(gateway.id()), Signal::INT);
    assert!(gateway.wait().unwrap().success());
    for node in nodes {
        wait_gone(node).await;
    }
}
