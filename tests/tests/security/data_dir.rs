//! The data dir's key and lock: `launch server rotate-key` refused while
//! the server runs or at the wrong place, then every secret resealed under a
//! new key the restarted server opens (and the old key refused), and a
//! second server on a running one's data dir refused.

use std::path::Path;
use std::process::Command;

use launch_e2e::server::SCRUBBED_ENV;
use launch_e2e::{Agent, Server, Service, binaries, cli, unique};

use super::find_env;

#[test]
fn rotate_key_refuses_a_running_server_and_keeps_every_secret_readable() {
    use std::os::unix::fs::PermissionsExt;
    let service = Service::quickstart();
    let secret = format!("rotated-{}", unique::hex(12));
    let mut server = Server::start();
    cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            &service.name,
            "API_KEY",
            "--env",
            &service.environment,
        ],
        &secret,
    )
    .success();
    let key_file = server.data_dir().join("secret.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();

    let rotate = |data_dir: &Path, extra: &[&str]| {
        let mut command = Command::new(binaries::launch());
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        command
            .args(["server", "rotate-key", "--data-dir"])
            .arg(data_dir)
            .args(extra);
        cli::finish(&["server", "rotate-key"], command, None)
    };
    let busy = rotate(server.data_dir(), &[]);
    busy.expect_code(1);
    assert!(busy.stderr.contains("stop it first"), "{busy}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), old_key);

    server.kill_hard();
    // Pointed at the wrong place it refuses before touching anything.
    let empty = tempfile::tempdir().unwrap();
    let nowhere = rotate(empty.path(), &[]);
    nowhere.expect_code(64);
    assert!(nowhere.stderr.contains("no secret key"), "{nowhere}");
    let wrong_db = format!("sqlite://{}/other.db", empty.path().display());
    let wrong = rotate(server.data_dir(), &["--database-url", &wrong_db]);
    wrong.expect_code(64);
    assert!(wrong.stderr.contains("--database-url"), "{wrong}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), old_key);
    assert!(!empty.path().join("other.db").exists());

    let rotated = rotate(server.data_dir(), &[]);
    rotated.success();
    assert!(
        rotated.stdout.contains("re-encrypted 1 secret"),
        "{rotated}"
    );
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(new_key, old_key);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !server
            .store_bytes()
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
    );

    // The old key opens nothing: a server given it refuses to start.
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .env("LAUNCH_SECRET_KEY", old_key.trim())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir());
    let old = cli::finish(&["server"], command, None);
    assert_ne!(old.code, Some(0), "{old}");
    assert!(old.stderr.contains("rotate-key"), "{old}");

    // The restarted server decrypts with the new key: the agent gets the value.
    server.restart();
    let agent = Agent::start(&server, &service.name, &service.environment);
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();
    let env = find_env(agent.data_dir()).expect("the release has a .env");
    assert!(
        std::fs::read_to_string(&env).unwrap().contains(&secret),
        "the deployed .env lacks the secret after rotation"
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let server = Server::start();
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir());
    let second = cli::finish(&["server"], command, None);
    assert_ne!(second.code, Some(0), "{second}");
    assert!(second.stderr.contains("in use by a running"), "{second}");
    server.cli(&["status"]).success();
}
