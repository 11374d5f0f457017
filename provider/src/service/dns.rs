//! The Cloudflare side of a public `launch_service`, the same for every
//! target: the names and address planned, the A record made once the host
//! exists, read back for drift, kept in step on update, found on import and
//! deleted before the host on destroy (a name must never point at an
//! address someone else may be handed).

pub mod wildcard;

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};
use tracing::info;

use super::state::{DnsSettings, State};
use crate::cloudflare::{Cloudflare, DnsRecord, RecordSpec};
use crate::provider::Clients;

/// Plans `fqdn`, `url`, `dns_record_id` and `dns_content` from `public`.
/// `prior` is the state being updated in place, `None` for a new host;
/// `clients` is `None` before the provider is configured.
pub fn plan(
    diags: &mut Diagnostics,
    clients: Option<&Clients>,
    planned: &mut State,
    prior: Option<&State>,
) {
    let dns_fields = |p: &mut State, v: Value<String>| {
        p.preview_record_id = match p.previews {
            Value::Value(true) => v.clone(),
            _ => Value::Null,
        };
        p.fqdn = v.clone();
        p.url = v.clone();
        p.dns_record_id = v.clone();
        p.dns_content = v;
    };
    match planned.public {
        Value::Value(true) => {}
        Value::Unknown => return dns_fields(planned, Value::Unknown),
        _ => return dns_fields(planned, Value::Null),
    }
    let domain = match clients.map(|c| c.dns_domain()) {
        Some(Ok(domain)) => domain,
        Some(Err(missing)) => {
            diags.error(
                "public = true needs Cloudflare DNS",
                format!("{missing}, or set public = false."),
                AttributePath::new("public"),
            );
            return;
        }
        None => return dns_fields(planned, Value::Unknown),
    };
    planned.fqdn = planned.wanted_fqdn(&domain);
    planned.url = match &planned.fqdn {
        Value::Value(fqdn) => Value::Value(format!("https://{fqdn}")),
        other => other.clone(),
    };
    planned.dns_content = planned.wanted_dns_content();
    planned.dns_record_id = match prior {
        Some(prior) if prior.dns_record_id.is_value() && prior.fqdn == planned.fqdn => {
            prior.dns_record_id.clone()
        }
        _ => Value::Unknown,
    };
    wildcard::plan(planned, prior);
}

/// The record a public service wants, once its name and address are known.
pub(super) fn record_spec(state: &State) -> Result<RecordSpec, String> {
    let Value::Value(name) = state.fqdn.clone() else {
        return Err("the DNS name is not known: configure cloudflare.domain".to_owned());
    };
    let Value::Value(content) = state.wanted_dns_content() else {
        return Err("the instance has neither a public nor a private IPv4 address to point the DNS record at: use a subnet that assigns one".to_owned());
    };
    let dns = state.dns_settings().unwrap_or(DnsSettings {
        proxied: false,
        allow_overwrite: false,
        ttl: 1,
    });
    Ok(RecordSpec {
        name,
        record_type: "A".to_owned(),
        content,
        proxied: dns.proxied,
        ttl: if dns.proxied { 1 } else { dns.ttl },
    })
}

/// Copies a record into the state's DNS fields.
pub fn observe_record(state: &mut State, record: &DnsRecord) {
    let fqdn = record.name.to_ascii_lowercase();
    state.url = Value::Value(format!("https://{fqdn}"));
    state.fqdn = Value::Value(fqdn);
    state.dns_record_id = Value::Value(record.id.clone());
    state.dns_content = Value::Value(record.content.clone());
}

pub fn clear(state: &mut State) {
    state.preview_record_id = Value::Null;
    state.fqdn = Value::Null;
    state.url = Value::Null;
    state.dns_record_id = Value::Null;
    state.dns_content = Value::Null;
}

fn copy(to: &mut State, from: &State) {
    to.fqdn = from.fqdn.clone();
    to.url = from.url.clone();
    to.dns_record_id = from.dns_record_id.clone();
    to.dns_content = from.dns_content.clone();
    to.preview_record_id = from.preview_record_id.clone();
}

/// The record of a public service, once its host exists. `false` (with an
/// error) when it could not be made.
pub async fn create(
    diags: &mut Diagnostics,
    clients: &Clients,
    state: &mut State,
    planned_fqdn: Value<String>,
    what: &str,
) -> bool {
    if state.public != Value::Value(true) {
        return true;
    }
    state.fqdn = planned_fqdn;
    let allow_overwrite = state.dns_settings().is_some_and(|d| d.allow_overwrite);
    let made = match (clients.cloudflare().await, record_spec(state)) {
        (Ok(cloudflare), Ok(spec)) => cloudflare
            .ensure(&spec, None, allow_overwrite)
            .await
            .map_err(|e| e.to_string()),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match made {
        Ok(record) => {
            info!(record_id = %record.id, fqdn = %record.name, content = %record.content, "DNS record in place");
            observe_record(state, &record);
            wildcard::create(diags, clients, state, what).await
        }
        Err(e) => {
            clear(state);
            diags.error(
                "cannot create the service's DNS record",
                format!("{e}. {what} is kept in state (tainted): the next apply replaces it, destroy removes it."),
                AttributePath::new("public"),
            );
            false
        }
    }
}

/// Read: a record deleted behind Terraform's back is planned again; one
/// re-pointed or renamed shows as a diff that apply puts back. `false`
/// (with an error) when Cloudflare could not be asked.
pub async fn read(diags: &mut Diagnostics, clients: &Clients, state: &mut State) -> bool {
    let Value::Value(record_id) = state.dns_record_id.clone() else {
        return true;
    };
    match clients.cloudflare().await {
        Ok(cloudflare) => match cloudflare.get(&record_id).await {
            Ok(Some(record)) => observe_record(state, &record),
            Ok(None) => {
                info!(%record_id, "DNS record is gone: planning it again");
                clear(state);
            }
            Err(e) => {
                diags.root_error(format!("cannot read DNS record {record_id}"), e.to_string());
                return false;
            }
        },
        Err(missing) => diags.root_warning(format!("cannot check DNS record {record_id}"), missing),
    }
    wildcard::read(diags, clients, state).await
}

/// Deletes record `record_id` (one already gone is fine: `Ok(false)`);
/// the error says what failed, Cloudflare settings or the call.
pub(super) async fn delete_record(clients: &Clients, record_id: &str) -> Result<bool, String> {
    let cloudflare = clients.cloudflare().await?;
    cloudflare
        .delete(record_id)
        .await
        .map_err(|e| e.to_string())
}

/// Destroy: the record goes first. `false` (with an error saying nothing
/// was destroyed) when it could not be deleted.
pub async fn delete(diags: &mut Diagnostics, clients: &Clients, prior: &State) -> bool {
    if !wildcard::delete(diags, clients, prior).await {
        return false;
    }
    let Value::Value(record_id) = &prior.dns_record_id else {
        return true;
    };
    match delete_record(clients, record_id).await {
        Ok(existed) => {
            info!(%record_id, existed, "DNS record deleted");
            true
        }
        Err(e) => {
            diags.root_error(
                format!("cannot delete DNS record {record_id}; nothing was destroyed"),
                format!("{e}. Fix that and run destroy again; or delete the record in Cloudflare, then run destroy again."),
            );
            false
        }
    }
}

/// Import: a record of the service's name pointing at the host makes it
/// public.
pub async fn import(diags: &mut Diagnostics, clients: &Clients, state: &mut State) {
    let (Value::Value(name), Value::Value(environment)) =
        (state.name.clone(), state.environment.clone())
    else {
        return;
    };
    if let (Ok(domain), Ok(cloudflare)) = (clients.dns_domain(), clients.cloudflare().await) {
        let fqdn = crate::cloudflare::record_name(&name, &environment, &domain);
        let content = state.wanted_dns_content();
        match cloudflare.list(&fqdn, "A").await {
            Ok(records) => {
                if let Some(record) = records
                    .iter()
                    .find(|r| Value::Value(r.content.clone()) == content)
                {
                    state.public = Value::Value(true);
                    observe_record(state, record);
                    wildcard::import(diags, clients, state).await;
                }
            }
            Err(e) => diags.root_warning("cannot look up the service's DNS record", e.to_string()),
        }
    }
}

/// Makes Cloudflare match `state.public` after an update: creates,
/// re-points, renames or deletes the record. On failure the state keeps
/// what is true (the prior record, if any) and the error names `public`.
pub async fn sync(diags: &mut Diagnostics, clients: &Clients, prior: &State, state: &mut State) {
    sync_record(diags, clients, prior, state).await;
    wildcard::sync(diags, clients, prior, state).await;
}

async fn sync_record(diags: &mut Diagnostics, clients: &Clients, prior: &State, state: &mut State) {
    let had = prior.dns_record_id.as_ref_option().cloned();
    let fail = |diags: &mut Diagnostics, state: &mut State, summary: &str, e: String| {
        copy(state, prior);
        diags.error(summary.to_owned(), e, AttributePath::new("public"));
    };
    if state.public != Value::Value(true) {
        if let Some(record_id) = had {
            if let Err(e) = delete_record(clients, &record_id).await {
                return fail(diags, state, "cannot delete the service's DNS record", e);
            }
            info!(%record_id, "DNS record deleted (public = false)");
        }
        clear(state);
        return;
    }
    let cf: &Cloudflare = match clients.cloudflare().await {
        Ok(cf) => cf,
        Err(missing) => {
            return fail(diags, state, "public = true needs Cloudflare DNS", missing);
        }
    };
    let spec = match record_spec(state) {
        Ok(spec) => spec,
        Err(e) => return fail(diags, state, "cannot make the service's DNS record", e),
    };
    let same_name = prior.fqdn == Value::Value(spec.name.clone());
    let known_id = had.as_deref().filter(|_| same_name);
    let allow_overwrite = state.dns_settings().is_some_and(|d| d.allow_overwrite);
    let record = match cf.ensure(&spec, known_id, allow_overwrite).await {
        Ok(record) => record,
        Err(e) => {
            return fail(
                diags,
                state,
                "cannot make the service's DNS record",
                e.to_string(),
            );
        }
    };
    observe_record(state, &record);
    if let Some(old) = had.filter(|old| *old != record.id)
        && let Err(e) = cf.delete(&old).await
    {
        diags.root_warning(
            format!(
                "the DNS record moved to {}, but the old record {old} could not be deleted",
                spec.name
            ),
            format!("{e}. Delete it in Cloudflare."),
        );
    }
}
