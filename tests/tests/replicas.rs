//! Two `launch server` replicas on one throwaway PostgreSQL and one S3
//! bucket (moto): an agent given both URLs and a `deploy --wait` given both
//! addresses survive `kill -9` of the replica holding the agent in the middle
//! of a deploy that logs heavily. The deploy is uploaded through the replica
//! that does not hold the agent, so its bundle reaches the agent through the
//! bucket and its lines reach `deploy --wait` through the relay until the
//! kill; a `logs -f` on that replica sees every line once, in order, before
//! and after. And both replicas ride out a PostgreSQL restart: the CLI's
//! calls fail with exit 3 meanwhile, and nothing is half-written.

use std::collections::BTreeMap;
use std::time::Duration;

use launch_e2e::agent::create_join_token;
use launch_e2e::moto_s3::MotoS3;
use launch_e2e::poll::eventually;
use launch_e2e::postgres::Cluster;
use launch_e2e::{Agent, Server, Service, cli, server};

const TIMEOUT: Duration = Duration::from_secs(180);

/// `(seq, text)` of every stored line of `mission_id`, read through `server`.
fn stored(server: &Server, service: &Service, mission_id: &str) -> BTreeMap<u64, String> {
    let out = server.cli(&[
        "logs",
        &service.name,
        "--env",
        &service.environment,
        "--mission",
        mission_id,
        "--output",
        "json",
    ]);
    out.success();
    out.json_lines()
        .into_iter()
        .map(|line| {
            (
                line["seq"].as_u64().expect("a seq"),
                cli::field(&line, "text").to_owned(),
            )
        })
        .collect()
}

/// The `tick N` numbers among `texts`, in the order given.
fn ticks<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<u64> {
    texts
        .into_iter()
        .filter_map(|text| text.trim().rsplit_once("tick ")?.1.parse().ok())
        .collect()
}

fn consecutive(numbers: &[u64]) -> bool {
    numbers.windows(2).all(|pair| pair[1] == pair[0] + 1)
}

#[test]
fn killing_the_replica_that_holds_the_agent_mid_deploy_loses_and_repeats_nothing() {
    let cluster = Cluster::start();
    let url = cluster.new_database();
    let moto = MotoS3::shared();
    let bucket = format!("s3://{}/bundles", moto.new_bucket());
    let env = server::s3_env(moto);
    let mut holder = Server::start_with_env(
        &["--database-url", &url, "--bundle-store", &bucket],
        &server::env_refs(&env),
    );
    let other = Server::start_replica(&holder).expect("a second replica starts");
    let both = format!("{},{}", holder.url(), other.url());
    // The CLI takes the first replica that accepts: the one without the agent.
    let other_first = format!("{},{}", other.url(), holder.url());

    let service = Service::quickstart();
    let join_token = create_join_token(&holder, &service.name, &service.environment);
    let mut agent = Agent::spawn_through(&both, &service.name, &service.environment, &join_token);
    agent.wait_connected();
    // A container that logs a numbered line every 5 ms from its start, and
    // only serves (passes the health gate) after 8 s.
    service.set_compose_script(
        "(i=0; while true; do i=$$((i+1)); echo tick $$i; /bin/busybox usleep 5000; done) & /bin/busybox sleep 8; exec /bin/busybox httpd -f -p 8080 -h /www",
    );
    let dir = service.dir_arg();
    let mut command = cli::command(
        &holder,
        &service.deploy_args(&dir, &["--wait", "--timeout", "3m"]),
    );
    command.env("LAUNCH_ADDR", &other_first);
    let mut deploy = launch_e2e::process::Process::spawn("launch deploy", command);
    deploy
        .stdout
        .wait_for(Duration::from_secs(120), |line| line.contains("tick 50"))
        .unwrap_or_else(|e| panic!("no ticks while deploying: {e}"));
    let mission_id = cli::ids(&deploy.stderr.text())
        .0
        .expect("deploy --wait names its mission");

    // Followed on the replica that does not hold the agent.
    let follower = cli::spawn(
        &other,
        &[
            "logs",
            &service.name,
            "--env",
            &service.environment,
            "-f",
            "--output",
            "json",
        ],
    );
    follower
        .stdout
        .wait_for(Duration::from_secs(30), |line| line.contains("tick 60"))
        .unwrap_or_else(|e| panic!("the other replica's follower sees no ticks: {e}"));

    holder.kill_hard();
    let status = deploy.wait_exit(TIMEOUT).expect("deploy --wait ends");
    let (stdout, stderr) = (deploy.stdout.text(), deploy.stderr.text());
    assert_eq!(
        status.code(),
        Some(0),
        "deploy --wait must resume through the other replica and end healthy\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("healthy:"), "{stdout}");
    let printed = ticks(stdout.lines());
    assert!(
        consecutive(&printed),
        "deploy --wait printed ticks lost, repeated or out of order: {printed:?}"
    );

    // The agent's session moved to the surviving replica.
    eventually(
        Duration::from_secs(30),
        "the agent connected to the other replica",
        || {
            let agents = cli::agents(&other);
            match agents.iter().any(|a| a["connected"] == true) {
                true => Ok(()),
                false => Err(format!("{agents:?}")),
            }
        },
    );
    let releases = cli::releases(&other, &service.name, &service.environment);
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(cli::field(&releases[0], "state"), "healthy", "{releases:?}");
    let received = agent
        .stderr()
        .lines()
        .filter(|line| line.contains("mission received") && line.contains(&mission_id))
        .count();
    assert_eq!(
        received,
        1,
        "the mission ran more than once\n{}",
        agent.stderr()
    );

    // Every stored line once, numbered without gaps; the follower on the
    // other replica saw the same lines, each once, in order.
    let lines = stored(&other, &service, &mission_id);
    let seqs: Vec<u64> = lines.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "stored seqs"
    );
    let stored_ticks = ticks(lines.values().map(String::as_str));
    assert!(
        stored_ticks.len() > 100 && consecutive(&stored_ticks),
        "stored ticks lost, repeated or out of order: {stored_ticks:?}"
    );
    let through = *seqs.last().unwrap();
    let followed = eventually(
        Duration::from_secs(30),
        "the follower to reach the stored lines",
        || {
            let seen: Vec<(u64, String)> = follower
                .stdout
                .lines()
                .iter()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|line| cli::field(line, "mission_id") == mission_id)
                .map(|line| {
                    (
                        line["seq"].as_u64().unwrap_or(0),
                        cli::field(&line, "text").to_owned(),
                    )
                })
                .collect();
            match seen.last() {
                Some((seq, _)) if *seq >= through => Ok(seen),
                last => Err(format!(
                    "{} lines, the last {last:?}, stored through {through}",
                    seen.len()
                )),
            }
        },
    );
    let followed_seqs: Vec<u64> = followed.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        followed_seqs,
        (1..=followed_seqs.len() as u64).collect::<Vec<_>>(),
        "the follower's seqs"
    );
    for (seq, text) in followed.iter().filter(|(seq, _)| *seq <= through) {
        assert_eq!(Some(text), lines.get(seq), "line {seq}");
    }
    agent.process.kill_hard();
}

/// PostgreSQL restarted under two replicas: while it is away, calls through
/// either replica fail with exit 3 saying the database cannot be reached, a
/// deploy among them leaves no release behind; once it is back, both carry
/// on without a restart of their own and `deploy --wait` through the
/// replica without the agent ends healthy.
#[test]
fn postgresql_restarting_fails_cli_calls_with_exit_3_then_both_replicas_carry_on() {
    let cluster = Cluster::start();
    let url = cluster.new_database();
    let moto = MotoS3::shared();
    let bucket = format!("s3://{}/bundles", moto.new_bucket());
    let env = server::s3_env(moto);
    let holder = Server::start_with_env(
        &["--database-url", &url, "--bundle-store", &bucket],
        &server::env_refs(&env),
    );
    let other = Server::start_replica(&holder).expect("a second replica starts");
    let service = Service::quickstart();
    let join_token = create_join_token(&holder, &service.name, &service.environment);
    let mut agent = Agent::spawn_through(
        &format!("{},{}", holder.url(), other.url()),
        &service.name,
        &service.environment,
        &join_token,
    );
    agent.wait_connected();
    let dir = service.dir_arg();
    cli::run(&other, &["services", "--output", "json"]).success();

    cluster.pause();
    for replica in [&holder, &other] {
        let listed = cli::run(replica, &["services", "--output", "json"]);
        listed.expect_code(3);
        assert!(
            listed.stderr.contains("cannot reach its database"),
            "{listed}"
        );
    }
    let refused = cli::run(&other, &service.deploy_args(&dir, &[]));
    refused.expect_code(3);
    assert!(refused.stderr.contains("database"), "{refused}");

    cluster.resume();
    eventually(
        Duration::from_secs(30),
        "both replicas to answer again",
        || {
            for replica in [&holder, &other] {
                let listed = cli::run(replica, &["services", "--output", "json"]);
                if listed.code != Some(0) {
                    return Err(listed.to_string());
                }
            }
            Ok(())
        },
    );
    assert!(
        cli::releases(&other, &service.name, &service.environment).is_empty(),
        "the deploy refused during the outage left a release behind"
    );
    let deployed = cli::run(
        &other,
        &service.deploy_args(&dir, &["--wait", "--timeout", "3m"]),
    );
    deployed.success();
    assert!(deployed.stdout.contains("healthy:"), "{deployed}");
    let releases = cli::releases(&holder, &service.name, &service.environment);
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(cli::field(&releases[0], "state"), "healthy", "{releases:?}");
    agent.process.kill_hard();
}
