//! The compose model against good files (what it reads) and broken ones
//! (each refused with the key or line that is wrong).

use super::features::{Flavor, HostCompose, unsupported};
use super::*;

fn vars() -> Variables {
    let mut vars = Variables::new();
    vars.set("TAG", "1.0");
    vars.set("WEB_PORT", "8080");
    vars.set_opaque("DB_PASSWORD");
    vars
}

fn load_ok(text: &str) -> Project {
    load("compose.yaml", text, &vars()).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(text: &str) -> String {
    load("compose.yaml", text, &vars()).unwrap_err().to_string()
}

const FULL: &str = r#"
x-common: &common
  restart: unless-stopped
services:
  web:
    <<: *common
    build:
      context: ./web
      dockerfile: Dockerfile
      target: runtime
      args: ["VERSION=${TAG}"]
    ports: ["${WEB_PORT}:80", "127.0.0.1:9000:9000/udp", {target: 81, published: 8081}]
    volumes: [data:/data, ./static:/srv:ro, {type: tmpfs, target: /tmp}]
    env_file: [web.env]
    environment:
      PASSWORD: ${DB_PASSWORD}
    depends_on:
      migrate: {condition: service_completed_successfully}
      db: {condition: service_healthy}
    networks: [front, back]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
  db:
    image: "db:${TAG}"
    restart: always
    networks: {back: {}}
    secrets: [db_password]
  migrate:
    image: "db:${TAG}"
    restart: "no"
  debug:
    image: tools
    profiles: [debug]
volumes:
  data: {}
networks:
  front:
  back:
secrets:
  db_password: {file: ./db_password.txt}
"#;

#[test]
fn a_full_file_is_read_into_the_model() {
    let project = load_ok(FULL);
    assert_eq!(
        project.services.keys().collect::<Vec<_>>(),
        ["db", "debug", "migrate", "web"]
    );
    let web = &project.services["web"];
    assert_eq!(
        web.restart.as_deref(),
        Some("unless-stopped"),
        "merge key applied"
    );
    assert_eq!(web.build.as_ref().unwrap().context, "./web");
    assert_eq!(web.depends_on["migrate"], "service_completed_successfully");
    assert!(web.has_healthcheck);
    assert_eq!(web.mounts[0].kind, MountKind::Volume);
    assert_eq!(web.mounts[1].kind, MountKind::Bind);
    assert_eq!(web.mounts[1].source.as_deref(), Some("./static"));
    assert_eq!(web.env_files, ["web.env"]);
    assert_eq!(project.services["db"].image.as_deref(), Some("db:1.0"));
    assert_eq!(project.services["debug"].profiles, ["debug"]);
    assert_eq!(
        project.one_shot_services().into_iter().collect::<Vec<_>>(),
        ["migrate"]
    );
    assert!(project.unset_variables.is_empty());
}

#[test]
fn unset_variables_are_collected_for_the_env_warning() {
    let project =
        load_ok("services:\n  a:\n    image: x\n    environment: [\"P=${PLEX_MEDIA_PATH}\"]\n");
    assert_eq!(
        project.unset_variables.into_iter().collect::<Vec<_>>(),
        ["PLEX_MEDIA_PATH"]
    );
}

#[test]
fn broken_files_name_the_line_or_key() {
    let cases = [
        (
            "services:\n  a:\n    image: x\n   bad: [\n",
            "compose.yaml:4",
        ),
        (
            "services:\n  a: {image: x}\nservice: {}\n",
            "unknown top-level key `service`",
        ),
        (
            "services:\n  a:\n    ports: [\"80:80\"]\n",
            "services.a: has neither `image` nor `build`",
        ),
        (
            "services:\n  a: {image: x, ports: [\"70000:80\"]}\n",
            "services.a.ports[0]: \"70000\" is not a port",
        ),
        (
            "services:\n  a: {image: x, ports: [\"8080:0\"]}\n",
            "services.a.ports[0]: \"0\" is not a port",
        ),
        (
            "services:\n  a: {image: x, imgae: y}\n",
            "services.a.imgae: unknown service key",
        ),
        (
            "services:\n  a: {image: x, depends_on: [b]}\n",
            "depends on `b`, which is not a service",
        ),
        (
            "services:\n  a: {image: x, depends_on: {a2: {condition: started}}}\n  a2: {image: x}\n",
            "services.a.depends_on.a2.condition",
        ),
        (
            "services:\n  a: {image: x, volumes: [\"data:/d\"]}\n",
            "named volume `data`, which is not declared",
        ),
        (
            "services:\n  a: {image: x, networks: [n]}\n",
            "network `n`, which is not declared",
        ),
        (
            "services:\n  a: {image: x, secrets: [s]}\n",
            "secret `s`, which is not declared",
        ),
        (
            "services:\n  a: {image: \"${DB_URL:?set it}\"}\n",
            "services.a.image: required variable DB_URL",
        ),
        (
            "services:\n  a: {image: \"${TAG\"}\n",
            "services.a.image: `${TAG` has no closing",
        ),
        (
            "services:\n  a: {image: x, restart: sometimes}\n",
            "services.a.restart",
        ),
        ("volumes: {}\n", "has no `services:`"),
        ("- a\n- b\n", "not a mapping"),
        (
            "services:\n  a: {image: x}\n  a: {image: y}\n",
            "compose.yaml:",
        ),
    ];
    for (text, expected) in cases {
        let message = load_err(text);
        assert!(message.contains(expected), "{text:?}\n  got: {message}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let message = load_err("services:\n  a: {ports: [\"99999\"]}\n  b: {image: x, nope: 1}\n");
    for expected in ["services.a:", "services.a.ports[0]", "services.b.nope"] {
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn opaque_secrets_are_not_judged() {
    load_ok("services:\n  a: {image: x, ports: [\"${DB_PASSWORD}:80\"]}\n");
}

#[test]
fn features_the_host_compose_lacks_are_named_with_what_to_do() {
    let project = load_ok(
        "name: shop\nservices:\n  a: {image: x, develop: {}}\nconfigs:\n  c: {file: ./c}\n",
    );
    let v1 = HostCompose::parse("docker-compose 1.29.2").unwrap();
    assert_eq!(v1.flavor, Flavor::Standalone);
    let problems: Vec<String> = unsupported(&project, v1)
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("name: the host runs docker-compose 1.29.2"),
        "{problems:?}"
    );
    assert!(
        problems[0].contains("install the compose v2 plugin"),
        "{problems:?}"
    );
    let old_v2 = HostCompose::parse("docker compose 2.21.0").unwrap();
    let problems = unsupported(&project, old_v2);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].at, "services.a.develop");
    let new_v2 = HostCompose::parse("docker compose 2.29.1").unwrap();
    assert!(unsupported(&project, new_v2).is_empty());
    assert!(unsupported(&load_ok("services:\n  a: {image: x}\n"), v1).is_empty());
    assert_eq!(new_v2.to_string(), "docker compose 2.29.1");
    assert_eq!(
        features::parse_version("v2.24.0-desktop.1"),
        Some((2, 24, 0))
    );
    assert_eq!(
        features::parse_version("1.29.2, build unknown"),
        Some((1, 29, 2))
    );
}
