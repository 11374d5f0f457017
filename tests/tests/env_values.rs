//! Secret values reach the container byte for byte: the agent writes them to
//! the release's `.env`, which compose reads through its own dotenv parser
//! (python-dotenv in v1, which expands `${…}` even inside single quotes;
//! compose-go in v2). A value holding every character those parsers treat
//! specially must arrive unchanged. This host has only compose v1, so this
//! test drives v1 on the real engine; the v2 encoding is unit-tested against
//! compose-go's documented rules in the agent (`dotenv`).

use std::time::Duration;

use launch_e2e::poll::eventually;
use launch_e2e::{Agent, Server, Service, cli};

/// `'`, `"`, `\`, `$`, `${…}` (set, unset, with a default, unclosed), `$$`,
/// `#`, `=`, backticks, spaces, a tab, newlines, a literal `\n`, non-ASCII,
/// and a trailing backslash.
const SPECIAL: &str = "it's \"quoted\" back\\slash \\\\ $ $HOME ${HOME} ${NOPE:-dflt} $${HOME} ${UNCLOSED #hash a=b `tick` tab\tend \\n é\nsecond line\n\nthird ${:-$}{x} \\";

#[test]
fn a_secret_with_every_special_character_reaches_the_container_unchanged_through_compose_v1() {
    let service = Service::quickstart();
    service.set_settle("1s");
    // The container prints its variable into a file its httpd serves.
    service.set_compose_script(
        "printf '%s\\n' \"$$SPECIAL\" > /www/special.txt; \
         exec /bin/busybox httpd -f -v -p 8080 -h /www",
    );
    let server = Server::start();
    let _agent = Agent::start(&server, &service.name, &service.environment);
    let set = cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            &service.name,
            "SPECIAL",
            "--env",
            &service.environment,
        ],
        &format!("{SPECIAL}\n"),
    );
    set.success();
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();

    let body = eventually(
        Duration::from_secs(30),
        "GET /special.txt",
        || match service.get("/special.txt") {
            Ok((200, body)) => Ok(body),
            other => Err(format!("{other:?}")),
        },
    );
    let container = service.running_containers().pop().unwrap_or_default();
    let inspect = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{json .Config.Env}}", &container])
        .output()
        .expect("docker inspect");
    assert_eq!(
        body,
        format!("{SPECIAL}\n"),
        "the container's variable differs from the secret (printf adds the last newline); its environment: {}",
        String::from_utf8_lossy(&inspect.stdout)
    );
}
