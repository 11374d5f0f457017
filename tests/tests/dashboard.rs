//! The dashboard in a real browser (headless chromium through the
//! `launch_e2e::browser` harness) against a real server, agent and Docker:
//! log in, pick an `env:` suggestion with the keyboard, open the service,
//! watch a CLI deploy's log lines arrive on the mission page while it runs,
//! Activate the previous release and see the page follow without a reload.
//! Screenshots of each page land in `target/screenshots/dashboard-*.png`.

use std::time::Duration;

use launch_e2e::browser::{Browser, DEADLINE, Key};
use launch_e2e::{Agent, Server, Service, cli};

const DEPLOY: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn a_person_searches_watches_a_deploy_and_activates_the_previous_release() {
    let server = Server::start();
    let service = Service::quickstart();
    let (name, env) = (service.name.clone(), service.environment.clone());
    let _agent = Agent::start(&server, &name, &env);
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();
    server
        .cli(&["services", "tag", &name, "--env", &env, "team=platform"])
        .success();
    let first = cli::releases(&server, &name, &env)[0]["release_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let base = format!("http://{}", server.addr);
    let browser = Browser::start().await;
    browser.goto(&format!("{base}/")).await;
    browser.type_text("#token", &server.admin_token).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("#rows", &name, DEADLINE).await;
    browser
        .wait_for_text("#rows", "team:platform", DEADLINE)
        .await;

    // `env:` suggests the environments; ArrowDown + Enter picks one.
    browser.type_text("#search", "env:").await;
    browser
        .wait_for_text("#suggestions", &format!("env:{env}"), DEADLINE)
        .await;
    browser.press("#search", Key::Down).await;
    browser.press("#search", Key::Enter).await;
    browser
        .wait_for(DEADLINE, "the suggestion in the search box", || async {
            let value = browser.value("#search").await;
            if value.trim() == format!("env:{env}") {
                Ok(())
            } else {
                Err(format!("value {value:?}"))
            }
        })
        .await;
    browser.wait_for_text("#rows", &name, DEADLINE).await;
    browser.screenshot("dashboard-services").await;

    browser
        .click(&format!("a[href='/services/{name}/{env}']"))
        .await;
    browser
        .wait_for_text("#releases", "current", DEADLINE)
        .await;
    browser.screenshot("dashboard-service").await;

    // A deploy from the CLI whose container prints while the health gate waits.
    service.set_compose_script(
        "for i in 1 2 3 4 5 6; do echo dash-tick-$$i; /bin/busybox sleep 1; done; \
         exec /bin/busybox httpd -f -v -p 8080 -h /www",
    );
    let mut deploy = cli::spawn(&server, &service.deploy_args(&dir, &["--wait"]));
    let mission = browser
        .wait_for(DEPLOY, "the new deploy's mission", || async {
            let releases = cli::releases(&server, &name, &env);
            match releases.first() {
                Some(newest) if newest["release_id"] != first.as_str() => {
                    Ok(newest["mission_id"].as_str().unwrap().to_owned())
                }
                _ => Err(format!("{releases:?}")),
            }
        })
        .await;
    browser.goto(&format!("{base}/missions/{mission}")).await;
    browser.wait_for_text("#log", "dash-tick-1", DEPLOY).await;
    // The deploy is still running while its lines show.
    let running = deploy.try_status().is_none();
    browser.screenshot("dashboard-mission-live").await;
    browser.wait_for_text("#log", "dash-tick-6", DEPLOY).await;
    browser
        .wait_for_text("#mission-state", "healthy", DEPLOY)
        .await;
    assert!(running, "the deploy ended before its first line showed");
    browser.screenshot("dashboard-mission-done").await;

    // Activate the first release: press, confirm, and the page follows.
    browser.goto(&format!("{base}/services/{name}/{env}")).await;
    let button = format!("button.activate[data-release='{first}']");
    browser.click(&button).await;
    browser
        .wait_for_text(&button, "Press again to confirm", DEADLINE)
        .await;
    browser.click(&button).await;
    browser
        .wait_for_text("#flash", "activating", DEADLINE)
        .await;
    browser.screenshot("dashboard-activating").await;
    browser
        .wait_for_text("#releases tr.current", &first, DEPLOY)
        .await;
    browser.wait_for_text("#status", "healthy", DEPLOY).await;
    browser.screenshot("dashboard-activated").await;

    browser.goto(&format!("{base}/agents")).await;
    browser.wait_for_text("main", "connected", DEADLINE).await;
    browser.screenshot("dashboard-agents").await;
    browser.close().await;
}
