//! The wildcard record of a public service with `previews = true`:
//! `*.<fqdn>`, DNS-only, pointing where the service's own record points, so
//! every pull-request preview `<preview>.<fqdn>` reaches the host's front
//! door without a record per preview. Previews are one label under the
//! service's name because that is what one wildcard covers (a wildcard
//! matches exactly one label). It follows the service's record through
//! plan, create, read, update, import and destroy, with the same rules:
//! a record someone else made is refused unless `dns.allow_overwrite`,
//! drift shows and is put back, and destroy deletes it before the host.

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};
use tracing::info;

use super::{delete_record, record_spec};
use crate::cloudflare::{MANAGED_COMMENT, RecordSpec};
use crate::provider::Clients;
use crate::service::state::State;

/// Whether `state` asks for the wildcard record.
pub fn wanted(state: &State) -> bool {
    state.public == Value::Value(true) && state.previews == Value::Value(true)
}

/// The record the wildcard should be: `*.` + the service's record, never
/// proxied (Cloudflare's proxy would need a certificate for every preview
/// name; the front door makes its own).
fn spec(state: &State) -> Result<RecordSpec, String> {
    let own = record_spec(state)?;
    let ttl = state.dns_settings().map_or(1, |d| d.ttl);
    Ok(RecordSpec {
        name: format!("*.{}", own.name),
        proxied: false,
        ttl,
        ..own
    })
}

/// Plans `preview_record_id`: kept while the name stays, unknown when a
/// record is to be made, null without previews.
pub fn plan(planned: &mut State, prior: Option<&State>) {
    planned.preview_record_id = if !wanted(planned) {
        Value::Null
    } else {
        match prior {
            Some(prior) if prior.preview_record_id.is_value() && prior.fqdn == planned.fqdn => {
                prior.preview_record_id.clone()
            }
            _ => Value::Unknown,
        }
    };
}

/// Before the host is made: a wildcard someone else owns stops the create
/// while nothing exists yet.
pub async fn check_free(clients: &Clients, planned: &State) -> Result<(), String> {
    let allow_overwrite = planned.dns_settings().is_some_and(|d| d.allow_overwrite);
    let (true, Value::Value(fqdn), false) = (wanted(planned), &planned.fqdn, allow_overwrite)
    else {
        return Ok(());
    };
    let cloudflare = clients.cloudflare().await?;
    cloudflare
        .check_free(&format!("*.{fqdn}"), "A")
        .await
        .map_err(|e| e.to_string())
}

/// Makes or re-points the wildcard (reusing `known_id` when it still
/// exists) and records its id.
async fn ensure(
    clients: &Clients,
    state: &mut State,
    known_id: Option<&str>,
) -> Result<(), String> {
    let spec = spec(state)?;
    let allow_overwrite = state.dns_settings().is_some_and(|d| d.allow_overwrite);
    let cloudflare = clients.cloudflare().await?;
    // A wildcard read as changed has no id in state; under this service's
    // own name, one carrying our comment is ours to put back.
    let ours = match known_id {
        Some(id) => Some(id.to_owned()),
        None => cloudflare
            .list(&spec.name, &spec.record_type)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|r| r.comment.as_deref() == Some(MANAGED_COMMENT))
            .map(|r| r.id),
    };
    let record = cloudflare
        .ensure(&spec, ours.as_deref(), allow_overwrite)
        .await
        .map_err(|e| e.to_string())?;
    info!(record_id = %record.id, name = %record.name, "wildcard DNS record for previews in place");
    state.preview_record_id = Value::Value(record.id);
    Ok(())
}

/// At create, after the service's record. `false` (with an error) when it
/// could not be made; the host stays in state, tainted.
pub async fn create(
    diags: &mut Diagnostics,
    clients: &Clients,
    state: &mut State,
    what: &str,
) -> bool {
    if !wanted(state) {
        state.preview_record_id = Value::Null;
        return true;
    }
    match ensure(clients, state, None).await {
        Ok(()) => true,
        Err(e) => {
            state.preview_record_id = Value::Null;
            diags.error(
                "cannot create the wildcard DNS record for previews",
                format!("{e}. {what} is kept in state (tainted): the next apply replaces it, destroy removes it."),
                AttributePath::new("previews"),
            );
            false
        }
    }
}

/// Read: a wildcard deleted, renamed or re-pointed in Cloudflare reads as
/// missing, so the plan makes it again (a changed one is found again by
/// its comment and put back). `false` when Cloudflare could not
/// be asked.
pub async fn read(diags: &mut Diagnostics, clients: &Clients, state: &mut State) -> bool {
    let Value::Value(record_id) = state.preview_record_id.clone() else {
        return true;
    };
    let Ok(cloudflare) = clients.cloudflare().await else {
        return true;
    };
    match cloudflare.get(&record_id).await {
        Ok(Some(record)) if spec(state).is_ok_and(|spec| record.matches(&spec)) => {}
        Ok(_) => {
            info!(%record_id, "wildcard DNS record is gone or changed: planning it again");
            state.preview_record_id = Value::Null;
        }
        Err(e) => {
            diags.root_error(format!("cannot read DNS record {record_id}"), e.to_string());
            return false;
        }
    }
    true
}

/// Destroy: the wildcard goes with the service's record, before the host.
pub async fn delete(diags: &mut Diagnostics, clients: &Clients, prior: &State) -> bool {
    let Value::Value(record_id) = &prior.preview_record_id else {
        return true;
    };
    match delete_record(clients, record_id).await {
        Ok(_) => true,
        Err(e) => {
            diags.root_error(
                format!("cannot delete wildcard DNS record {record_id}; nothing was destroyed"),
                format!("{e}. Fix that and run destroy again; or delete the record in Cloudflare, then run destroy again."),
            );
            false
        }
    }
}

/// Update: made, re-pointed or deleted to match `previews` and `public`.
/// On failure the state keeps the prior record id and the error names
/// `previews`.
pub async fn sync(diags: &mut Diagnostics, clients: &Clients, prior: &State, state: &mut State) {
    let had = prior.preview_record_id.as_ref_option().cloned();
    let result = if wanted(state) {
        let known = had.as_deref().filter(|_| prior.fqdn == state.fqdn);
        let made = ensure(clients, state, known).await;
        match (&made, &had, &state.preview_record_id) {
            (Ok(()), Some(old), Value::Value(new)) if old != new => {
                delete_quietly(diags, clients, old).await;
            }
            _ => {}
        }
        made
    } else {
        match had {
            Some(old) => delete_record(clients, &old)
                .await
                .map(|_| state.preview_record_id = Value::Null),
            None => {
                state.preview_record_id = Value::Null;
                Ok(())
            }
        }
    };
    if let Err(e) = result {
        state.preview_record_id = prior.preview_record_id.clone();
        diags.error(
            "cannot update the wildcard DNS record for previews",
            e,
            AttributePath::new("previews"),
        );
    }
}

async fn delete_quietly(diags: &mut Diagnostics, clients: &Clients, record_id: &str) {
    if let Err(e) = delete_record(clients, record_id).await {
        diags.root_warning(
            format!("the old wildcard DNS record {record_id} could not be deleted"),
            format!("{e}. Delete it in Cloudflare."),
        );
    }
}

/// Import: a wildcard under the service's name pointing at the same
/// address means previews were on.
pub async fn import(diags: &mut Diagnostics, clients: &Clients, state: &mut State) {
    let (Value::Value(fqdn), Value::Value(content)) = (&state.fqdn, &state.dns_content) else {
        return;
    };
    let Ok(cloudflare) = clients.cloudflare().await else {
        return;
    };
    match cloudflare.list(&format!("*.{fqdn}"), "A").await {
        Ok(records) => {
            if let Some(record) = records.iter().find(|r| &r.content == content) {
                state.previews = Value::Value(true);
                state.preview_record_id = Value::Value(record.id.clone());
            }
        }
        Err(e) => diags.root_warning(
            "cannot look up the wildcard DNS record for previews",
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::state::Text;

    fn state(public: bool, previews: Value<bool>, fqdn: &str, record: Text) -> State {
        State {
            public: Value::Value(public),
            previews,
            fqdn: Value::Value(fqdn.to_owned()),
            preview_record_id: record,
            ..Default::default()
        }
    }

    #[test]
    fn the_wildcard_is_planned_only_for_public_services_with_previews_and_kept_while_the_name_stays()
     {
        let id = || Value::Value("rec-1".to_owned());
        let on = Value::Value(true);
        let mut planned = state(true, on, "a.example", Value::Null);
        plan(&mut planned, None);
        assert_eq!(
            planned.preview_record_id,
            Value::Unknown,
            "a new one is made"
        );

        let prior = state(true, on, "a.example", id());
        let mut planned = state(true, on, "a.example", Value::Null);
        plan(&mut planned, Some(&prior));
        assert_eq!(
            planned.preview_record_id,
            id(),
            "an unchanged plan keeps it"
        );

        let mut renamed = state(true, on, "b.example", Value::Null);
        plan(&mut renamed, Some(&prior));
        assert_eq!(
            renamed.preview_record_id,
            Value::Unknown,
            "a new name, a new record"
        );

        for (public, previews) in [
            (false, on),
            (true, Value::Value(false)),
            (true, Value::Null),
        ] {
            let mut planned = state(public, previews, "a.example", id());
            plan(&mut planned, Some(&prior));
            assert_eq!(planned.preview_record_id, Value::Null, "public {public}");
        }
    }
}
