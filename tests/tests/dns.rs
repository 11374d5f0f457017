//! `launch_service { public = true }` end to end: the real terraform and
//! provider against moto (EC2), a real control plane and the Cloudflare fake
//! in `launch_e2e::cloudflare`. The record's name, type, content and comment;
//! the name and address registered with the control plane, and registered
//! again when `public` changes; an empty second plan; `public = false`
//! deleting it in place; drift in
//! Cloudflare (re-pointed, deleted) shown and put back; a record someone
//! else made refused, then adopted with `allow_overwrite`; a record that
//! cannot be made after launch keeping the instance (tainted); import finding
//! the record; a rename moving it; throttling and 5xx retried; destroy
//! deleting the record; the plan-time error without a `cloudflare`
//! configuration; the API token never in terraform's output; and
//! `previews = true` keeping a wildcard record `*.<fqdn>` beside the
//! service's, with the same drift, import and destroy rules.

use launch_e2e::cloudflare::{CloudflareFake, Record};
use launch_e2e::moto::Moto;
use launch_e2e::terraform::{self, Terraform, Workspace};
use launch_e2e::{Server, grpc, unique};

const DOMAIN: &str = "launch-e2e.example";
/// An address no moto instance has (TEST-NET-2), for out-of-band changes.
const ELSEWHERE: &str = "198.51.100.7";

fn service_block(name: &str, extra: &str) -> String {
    format!(
        "resource \"launch_service\" \"svc\" {{\n  name   = \"{name}\"\n  target = \"aws\"\n  wait_for_agent = false\n{extra}\n}}\n"
    )
}

struct Setup {
    server: Server,
    moto: Moto,
    cloudflare: CloudflareFake,
    name: String,
}

impl Setup {
    fn new() -> Setup {
        let token = format!("cf-token-{}", unique::hex(16));
        Setup {
            server: Server::start(),
            moto: Moto::start(),
            cloudflare: CloudflareFake::start(&token, &unique::hex(16), DOMAIN),
            name: unique::service_name(),
        }
    }

    /// A workspace whose provider finds Cloudflare through the environment.
    fn workspace(&self, terraform: &Terraform) -> Workspace {
        let mut tf = Workspace::new(
            terraform,
            &self.server.url(),
            &self.server.admin_token,
            &self.moto.url(),
        );
        tf.set_env("CLOUDFLARE_API_TOKEN", &self.cloudflare.token);
        tf.set_env("CLOUDFLARE_ZONE_ID", &self.cloudflare.zone_id);
        tf.set_env("CLOUDFLARE_DOMAIN", DOMAIN);
        tf.set_env("CLOUDFLARE_API_URL", &self.cloudflare.api_url());
        tf
    }

    fn fqdn(&self) -> String {
        format!("{}.{DOMAIN}", self.name)
    }
}

/// The address the record must hold: the public IP, else the private one.
fn host_address(values: &serde_json::Value) -> String {
    values["public_ip"]
        .as_str()
        .or_else(|| values["private_ip"].as_str())
        .unwrap_or_else(|| panic!("the instance has no address: {values}"))
        .to_owned()
}

/// Terraform wraps diagnostics to the terminal width: compare with
/// whitespace runs folded to one space.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn only_record(cloudflare: &CloudflareFake, fqdn: &str) -> Record {
    let mut named = cloudflare.named(fqdn);
    assert_eq!(named.len(), 1, "expected one record {fqdn}: {named:?}");
    named.remove(0)
}

#[test]
fn public_apply_creates_the_a_record_and_public_false_deletes_it_in_place() {
    let setup = Setup::new();
    let ec2 = setup.moto.peer();
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(&setup.name, "  public = true"));
    tf.apply().success();

    let values = tf.resource_values("launch_service.svc").unwrap();
    let record = only_record(&setup.cloudflare, &setup.fqdn());
    assert_eq!(record.record_type, "A");
    assert_eq!(record.content, host_address(&values), "{values}");
    assert_eq!(record.comment.as_deref(), Some("managed by launch"));
    assert_eq!((record.proxied, record.ttl), (false, 1));
    assert_eq!(values["fqdn"], setup.fqdn().as_str(), "{values}");
    assert_eq!(
        values["url"],
        format!("https://{}", setup.fqdn()),
        "{values}"
    );
    assert_eq!(values["dns_record_id"], record.id.as_str(), "{values}");
    assert_eq!(values["dns_content"], record.content.as_str(), "{values}");
    // The control plane holds the name (the front door routes it) and the
    // address (the URL of a service without a name).
    let registered = || grpc::service_info(&setup.server, &setup.name, "prod");
    assert_eq!(registered().fqdn, setup.fqdn());
    assert_eq!(registered().host_address, host_address(&values));

    let plan = tf.plan();
    assert_eq!(
        plan.code,
        0,
        "a second plan must be empty:\n{}",
        plan.text()
    );

    let instance = ec2.live_instances(&setup.name, "prod").pop().unwrap();
    tf.write(&service_block(&setup.name, "  public = false"));
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout.contains("0 to add, 1 to change, 0 to destroy"),
        "public = false must update in place:\n{}",
        plan.stdout
    );
    tf.apply().success();
    assert!(
        setup.cloudflare.named(&setup.fqdn()).is_empty(),
        "public = false must delete the record: {:?}",
        setup.cloudflare.records()
    );
    let values = tf.resource_values("launch_service.svc").unwrap();
    assert!(values["dns_record_id"].is_null(), "{values}");
    assert!(values["fqdn"].is_null(), "{values}");
    assert_eq!(
        registered().fqdn,
        "",
        "public = false must unregister the name"
    );
    assert_eq!(registered().host_address, host_address(&values));
    let live = ec2.live_instances(&setup.name, "prod");
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].id, instance.id, "the instance must be kept");
    let plan = tf.plan();
    assert_eq!(plan.code, 0, "{}", plan.text());

    tf.write(&service_block(&setup.name, "  public = true"));
    tf.apply().success();
    assert_eq!(
        only_record(&setup.cloudflare, &setup.fqdn()).record_type,
        "A"
    );
    assert_eq!(
        registered().fqdn,
        setup.fqdn(),
        "public = true after create must register the name"
    );
    tf.destroy().success();
    assert!(
        setup.cloudflare.records().is_empty(),
        "destroy must delete the record: {:?}",
        setup.cloudflare.records()
    );
    assert!(ec2.live_instances(&setup.name, "prod").is_empty());
    assert_eq!(setup.cloudflare.unauthorized(), 0);
}

#[test]
fn a_record_changed_in_cloudflare_is_shown_and_put_back_and_a_deleted_one_is_recreated() {
    let setup = Setup::new();
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(
        &setup.name,
        "  public = true\n  environment = \"staging\"\n  dns {\n    ttl = 300\n  }",
    ));
    tf.apply().success();
    let fqdn = format!("{}-staging.{DOMAIN}", setup.name);
    let record = only_record(&setup.cloudflare, &fqdn);
    assert_eq!(record.ttl, 300);
    let address = record.content.clone();

    setup.cloudflare.set_content(&record.id, ELSEWHERE);
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout
            .contains(&format!("\"{ELSEWHERE}\" -> \"{address}\"")),
        "the re-pointed record must show in the plan:\n{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("1 to change"),
        "drift is fixed in place:\n{}",
        plan.stdout
    );
    tf.apply().success();
    let fixed = only_record(&setup.cloudflare, &fqdn);
    assert_eq!(
        (fixed.id.as_str(), fixed.content.as_str()),
        (record.id.as_str(), address.as_str())
    );

    setup.cloudflare.remove(&record.id);
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout.contains("dns_record_id") && plan.stdout.contains("known after apply"),
        "a deleted record must be planned again:\n{}",
        plan.stdout
    );
    tf.apply().success();
    let recreated = only_record(&setup.cloudflare, &fqdn);
    assert_ne!(recreated.id, record.id);
    assert_eq!(
        (recreated.content.as_str(), recreated.ttl),
        (address.as_str(), 300)
    );
    let plan = tf.plan();
    assert_eq!(plan.code, 0, "{}", plan.text());

    tf.destroy().success();
    assert!(setup.cloudflare.records().is_empty());
}

#[test]
fn a_record_made_by_someone_else_is_refused_before_launch_and_adopted_with_allow_overwrite() {
    let setup = Setup::new();
    let ec2 = setup.moto.peer();
    let theirs = setup.cloudflare.insert(Record {
        comment: Some("hand made".into()),
        tags: vec!["team:web".into()],
        ..Record::a(&setup.fqdn(), ELSEWHERE)
    });
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(&setup.name, "  public = true"));
    let apply = tf.apply();
    assert_eq!(apply.code, 1, "{}", apply.text());
    let text = flat(&apply.text());
    assert!(
        text.contains("already exists") && text.contains("allow_overwrite = true"),
        "the error must say what to do:\n{text}"
    );
    assert!(
        ec2.live_instances(&setup.name, "prod").is_empty(),
        "a name conflict must be found before an instance is launched"
    );
    assert_eq!(
        only_record(&setup.cloudflare, &setup.fqdn()).content,
        ELSEWHERE,
        "their record must be untouched"
    );

    tf.write(&service_block(
        &setup.name,
        "  public = true\n  dns {\n    allow_overwrite = true\n  }",
    ));
    tf.apply().success();
    let values = tf.resource_values("launch_service.svc").unwrap();
    let adopted = only_record(&setup.cloudflare, &setup.fqdn());
    assert_eq!(
        adopted.id, theirs,
        "the record must be adopted, not replaced"
    );
    assert_eq!(adopted.content, host_address(&values));
    assert_eq!(
        (adopted.comment.as_deref(), adopted.tags.as_slice()),
        (Some("hand made"), ["team:web".to_owned()].as_slice()),
        "adopting must keep the record's comment and tags"
    );
    assert_eq!(values["dns_record_id"], theirs.as_str());
    let plan = tf.plan();
    assert_eq!(plan.code, 0, "{}", plan.text());

    tf.destroy().success();
    assert!(setup.cloudflare.records().is_empty());
}

#[test]
fn allow_overwrite_takes_the_name_over_from_every_page_of_same_name_records() {
    let setup = Setup::new();
    // More than one page (the provider asks for 100 a page).
    let mut theirs: Vec<String> = (1..=150)
        .map(|i| {
            let content = format!("192.0.{}.{}", 2 + i / 100, i % 100 + 1);
            setup.cloudflare.insert(Record::a(&setup.fqdn(), &content))
        })
        .collect();
    theirs.sort();
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(
        &setup.name,
        "  public = true\n  dns {\n    allow_overwrite = true\n  }",
    ));
    tf.apply().success();
    let values = tf.resource_values("launch_service.svc").unwrap();
    let kept = only_record(&setup.cloudflare, &setup.fqdn());
    assert!(theirs.contains(&kept.id), "one of the records is adopted");
    assert_eq!(kept.content, host_address(&values));
    assert!(
        setup
            .cloudflare
            .requests()
            .iter()
            .any(|r| r.starts_with("GET ") && r.contains("page=2")),
        "the second page must have been read"
    );
    tf.destroy().success();
    assert!(setup.cloudflare.records().is_empty());
}

#[test]
fn a_record_that_cannot_be_made_after_launch_keeps_the_instance_tainted_for_destroy() {
    let setup = Setup::new();
    let ec2 = setup.moto.peer();
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(&setup.name, "  public = true"));
    setup.cloudflare.refuse_creates(true);
    let apply = tf.apply();
    assert_eq!(apply.code, 1, "{}", apply.text());
    let text = flat(&apply.text());
    assert!(
        text.contains("cannot create the service's DNS record")
            && text.contains("[1004] DNS Validation Error"),
        "the error must say what failed, with Cloudflare's code:\n{text}"
    );
    let instance = ec2
        .live_instances(&setup.name, "prod")
        .pop()
        .expect("the instance exists");
    let values = tf
        .resource_values("launch_service.svc")
        .expect("the instance is kept in state");
    assert_eq!(values["instance_id"], instance.id.as_str(), "{values}");
    assert!(values["dns_record_id"].is_null(), "{values}");
    let plan = tf.plan();
    assert!(
        plan.stdout.contains("tainted"),
        "the kept instance must be tainted:\n{}",
        plan.stdout
    );

    setup.cloudflare.refuse_creates(false);
    tf.apply().success();
    let replaced = ec2.live_instances(&setup.name, "prod");
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_ne!(
        replaced[0].id, instance.id,
        "the tainted instance is replaced"
    );
    only_record(&setup.cloudflare, &setup.fqdn());
    tf.destroy().success();
    assert!(ec2.live_instances(&setup.name, "prod").is_empty());
    assert!(setup.cloudflare.records().is_empty());
}

#[test]
fn import_finds_the_record_and_a_rename_moves_it() {
    let setup = Setup::new();
    let first = setup.workspace(&terraform::newest());
    first.write(&service_block(&setup.name, "  public = true"));
    first.apply().success();
    let record = only_record(&setup.cloudflare, &setup.fqdn());

    let second = setup.workspace(&terraform::newest());
    // Import assumes wait_for_agent's default (it only matters at create).
    second.write(&format!(
        "resource \"launch_service\" \"svc\" {{\n  name   = \"{}\"\n  target = \"aws\"\n  public = true\n}}\n",
        setup.name
    ));
    second
        .run(&[
            "import",
            "-no-color",
            "-input=false",
            "launch_service.svc",
            &format!("prod/{}", setup.name),
        ])
        .success();
    let values = second.resource_values("launch_service.svc").unwrap();
    assert_eq!(values["public"], true, "{values}");
    assert_eq!(values["dns_record_id"], record.id.as_str(), "{values}");
    let plan = second.plan();
    assert_eq!(
        plan.code,
        0,
        "plan after import must be empty:\n{}",
        plan.text()
    );
    std::fs::remove_file(second.dir.path().join("terraform.tfstate")).unwrap();

    let renamed = unique::service_name();
    first.write(&service_block(&renamed, "  public = true"));
    let plan = first.plan();
    assert!(
        plan.stdout.contains("must be replaced"),
        "a new name replaces the service:\n{}",
        plan.stdout
    );
    first.apply().success();
    assert!(
        setup.cloudflare.named(&setup.fqdn()).is_empty(),
        "the old name must be gone: {:?}",
        setup.cloudflare.records()
    );
    let moved = only_record(&setup.cloudflare, &format!("{renamed}.{DOMAIN}"));
    let values = first.resource_values("launch_service.svc").unwrap();
    assert_eq!(moved.content, host_address(&values));
    first.destroy().success();
    assert!(setup.cloudflare.records().is_empty());
}

#[test]
fn previews_keep_a_wildcard_record_that_drift_import_and_destroy_follow() {
    let setup = Setup::new();
    let wildcard = format!("*.{}", setup.fqdn());
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(&setup.name, "  public = true"));
    tf.apply().success();
    assert!(
        setup.cloudflare.named(&wildcard).is_empty(),
        "no wildcard without previews"
    );

    tf.write(&service_block(
        &setup.name,
        "  public = true\n  previews = true",
    ));
    let plan = tf.plan();
    assert!(
        plan.stdout.contains("0 to add, 1 to change, 0 to destroy"),
        "previews = true must update in place:\n{}",
        plan.stdout
    );
    tf.apply().success();
    let values = tf.resource_values("launch_service.svc").unwrap();
    let record = only_record(&setup.cloudflare, &wildcard);
    let own = only_record(&setup.cloudflare, &setup.fqdn());
    assert_eq!(
        (
            record.record_type.as_str(),
            record.content.as_str(),
            record.proxied
        ),
        ("A", own.content.as_str(), false),
        "the wildcard is DNS-only and points where the service's record does"
    );
    assert_eq!(values["preview_record_id"], record.id.as_str(), "{values}");
    let plan = tf.plan();
    assert_eq!(
        plan.code,
        0,
        "a second plan must be empty:\n{}",
        plan.text()
    );

    // Re-pointed, then deleted in Cloudflare: shown, and put back.
    setup.cloudflare.set_content(&record.id, ELSEWHERE);
    let plan = tf.plan();
    assert_eq!(
        plan.code,
        2,
        "a re-pointed wildcard must show:\n{}",
        plan.text()
    );
    tf.apply().success();
    assert_eq!(
        only_record(&setup.cloudflare, &wildcard).content,
        own.content
    );
    let record = only_record(&setup.cloudflare, &wildcard);
    setup.cloudflare.remove(&record.id);
    let plan = tf.plan();
    assert!(
        plan.stdout.contains("preview_record_id"),
        "a deleted wildcard must show:\n{}",
        plan.stdout
    );
    tf.apply().success();
    let record = only_record(&setup.cloudflare, &wildcard);

    // Import finds previews on.
    let second = setup.workspace(&terraform::newest());
    second.write(&format!(
        "resource \"launch_service\" \"svc\" {{\n  name   = \"{}\"\n  target = \"aws\"\n  public = true\n  previews = true\n}}\n",
        setup.name
    ));
    second
        .run(&[
            "import",
            "-no-color",
            "-input=false",
            "launch_service.svc",
            &format!("prod/{}", setup.name),
        ])
        .success();
    let imported = second.resource_values("launch_service.svc").unwrap();
    assert_eq!(imported["previews"], true, "{imported}");
    assert_eq!(
        imported["preview_record_id"],
        record.id.as_str(),
        "{imported}"
    );
    let plan = second.plan();
    assert_eq!(
        plan.code,
        0,
        "plan after import must be empty:\n{}",
        plan.text()
    );
    std::fs::remove_file(second.dir.path().join("terraform.tfstate")).unwrap();

    // previews = false deletes it in place; destroy deletes everything.
    tf.write(&service_block(&setup.name, "  public = true"));
    tf.apply().success();
    assert!(
        setup.cloudflare.named(&wildcard).is_empty(),
        "previews = false must delete the wildcard: {:?}",
        setup.cloudflare.records()
    );
    assert_eq!(only_record(&setup.cloudflare, &setup.fqdn()).id, own.id);
    tf.write(&service_block(
        &setup.name,
        "  public = true\n  previews = true",
    ));
    tf.apply().success();
    assert_eq!(setup.cloudflare.named(&wildcard).len(), 1);
    tf.destroy().success();
    assert!(
        setup.cloudflare.records().is_empty(),
        "destroy must delete both records: {:?}",
        setup.cloudflare.records()
    );
}

#[test]
fn cloudflare_throttling_and_5xx_are_retried() {
    let setup = Setup::new();
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(&setup.name, "  public = true"));
    setup.cloudflare.throttle_next(2, 1);
    tf.apply().success();
    assert_eq!(setup.cloudflare.throttled(), 2);
    for wait in setup.cloudflare.waits_after_throttling() {
        let wait = wait.expect("a throttled request is retried");
        assert!(
            wait >= std::time::Duration::from_millis(950),
            "Retry-After: 1 must be honoured, but the retry came after {wait:?}"
        );
    }
    assert_eq!(
        only_record(&setup.cloudflare, &setup.fqdn()).record_type,
        "A"
    );

    setup.cloudflare.fail_next(2);
    let plan = tf.plan();
    assert_eq!(plan.code, 0, "5xx reads must be retried:\n{}", plan.text());
    assert_eq!(setup.cloudflare.failed(), 2);

    setup.cloudflare.fail_next(100);
    let plan = tf.plan();
    assert_eq!(plan.code, 1, "{}", plan.text());
    assert!(
        flat(&plan.text()).contains("run terraform again later"),
        "when retries run out the error says what to do:\n{}",
        plan.text()
    );
    setup.cloudflare.fail_next(0);
    tf.destroy().success();
    assert!(setup.cloudflare.records().is_empty());
}

#[test]
fn public_without_cloudflare_settings_fails_at_plan_naming_public_on_every_terraform() {
    for terraform in terraform::versions() {
        // Nothing is reachable: the error must come before any call.
        let mut tf = Workspace::new(
            &terraform,
            "http://127.0.0.1:9",
            "unused",
            "http://127.0.0.1:9",
        );
        for key in [
            "CLOUDFLARE_API_TOKEN",
            "CLOUDFLARE_ZONE_ID",
            "CLOUDFLARE_DOMAIN",
        ] {
            tf.set_env(key, "");
        }
        let v = &terraform.version;
        tf.write(&service_block("web", "  public = true"));
        let plan = tf.plan();
        assert_eq!(plan.code, 1, "terraform {v}:\n{}", plan.text());
        let text = flat(&plan.text());
        for wanted in [
            "public = true needs Cloudflare DNS",
            "CLOUDFLARE_ZONE_ID",
            "public = false",
            "launch_service.svc",
        ] {
            assert!(
                text.contains(wanted),
                "terraform {v}: expected {wanted:?} in:\n{text}"
            );
        }

        tf.write(&service_block("web", "  public = false"));
        let plan = tf.plan();
        assert_eq!(
            plan.code,
            2,
            "terraform {v}: a private service needs no Cloudflare:\n{}",
            plan.text()
        );
    }
}

#[test]
fn the_cloudflare_token_never_appears_in_terraform_output_with_trace_logs() {
    let setup = Setup::new();
    let mut tf = setup.workspace(&terraform::newest());
    tf.set_env("TF_LOG", "trace");
    // The token goes through terraform itself (a sensitive variable into the
    // provider block), not only through the provider's environment.
    tf.set_env("CLOUDFLARE_API_TOKEN", "");
    tf.set_env("TF_VAR_cf_token", &setup.cloudflare.token);
    let config = format!(
        "variable \"cf_token\" {{\n  type      = string\n  sensitive = true\n}}\n\nprovider \"launch\" {{\n  cloudflare {{\n    api_token = var.cf_token\n  }}\n}}\n\n{}",
        service_block(&setup.name, "  public = true")
    );
    tf.write(&config);
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    let apply = tf.apply();
    apply.success();
    let refresh = tf.plan();
    assert_eq!(refresh.code, 0, "{}", refresh.text());
    let destroy = tf.destroy();
    destroy.success();
    assert_eq!(setup.cloudflare.unauthorized(), 0);

    // A token Cloudflare refuses is reported as such, and not echoed either.
    let wrong = format!("wrong-{}", unique::hex(16));
    tf.set_env("TF_VAR_cf_token", &wrong);
    let refused = tf.apply();
    assert_eq!(refused.code, 1, "{}", refused.text());
    assert!(
        flat(&refused.text()).contains("Zone / DNS / Edit"),
        "the error must say which permission the token needs:\n{}",
        refused.text()
    );
    assert!(setup.cloudflare.unauthorized() > 0);
    for (what, run, token) in [
        ("plan", &plan, &setup.cloudflare.token),
        ("apply", &apply, &setup.cloudflare.token),
        ("refresh", &refresh, &setup.cloudflare.token),
        ("destroy", &destroy, &setup.cloudflare.token),
        ("refused apply", &refused, &wrong),
    ] {
        assert!(
            !run.text().contains(token.as_str()),
            "{what} output (TF_LOG=trace) holds the Cloudflare API token"
        );
    }
    assert!(!tf.state_text().contains(&setup.cloudflare.token));
}
