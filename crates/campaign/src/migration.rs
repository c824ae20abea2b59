//! What the instance tells and does for the migration engine (`/nl/migration/v1`), an
//! administrator's API: the engine signs in as an operator holding ADMINISTRATION, like any
//! other tool that works through the instance's API.

use std::collections::HashMap;

use ims_identity::Now;
use ims_wire::migration::{
    GroupFacts, ImsAccountFacts, InstanceFacts, OperatorFacts, OperatorPage, RestrictionFacts, UsageFacts,
    MAX_PAGE,
};

use crate::fault::Fault;
use crate::model::Operator;
use crate::service::{holds, Instance, InstanceKind, ADMINISTRATION};
use crate::usage::UsageSummary;
use crate::version::{Build, NativeAuth};

impl Instance {
    async fn require_administration(&self, actor: &Operator) -> Result<(), Fault> {
        if holds(&self.effective_rights(actor).await?, ADMINISTRATION) {
            Ok(())
        } else {
            Err(Fault::forbidden(
                "the migration API needs the ADMINISTRATION right",
            ))
        }
    }

    /// The instance as a whole: build and what it allows, restrictions, IMS configuration,
    /// groups with their rights.
    pub async fn migration_facts(&self, actor: &Operator, now: Now) -> Result<InstanceFacts, Fault> {
        self.require_administration(actor).await?;
        let store = self.store();
        let build = self.info().build;
        let restrictions = self.restrictions();
        let groups = store
            .groups()
            .await?
            .into_iter()
            .map(|g| GroupFacts {
                name: g.name,
                label: g.label,
                rights: g.rights,
            })
            .collect();
        Ok(InstanceFacts {
            name: self.info().name.clone(),
            kind: match self.info().kind {
                InstanceKind::Marketing => "marketing",
                InstanceKind::MessageCenter => "message_center",
            }
            .to_owned(),
            build: build.to_string(),
            accepts_ims_signin: build.accepts_ims_signin(),
            accepts_bearer_tokens: build.accepts_bearer_tokens(),
            supports_restrictions: build.supports_restrictions(),
            native_auth: match build.native_auth() {
                NativeAuth::AllowListOnly => "allow_list_only",
                NativeAuth::Allowed if build.supports_restrictions() => "until_switched_off",
                NativeAuth::Allowed => "allowed",
            }
            .to_owned(),
            bearer_builds: Build::BEARER_BUILDS.to_owned(),
            restriction_builds: Build::RESTRICTION_BUILDS.to_owned(),
            restrictions: RestrictionFacts {
                operator_management_restricted: restrictions.operator_management,
                native_api_disabled: restrictions.native_api,
                allow_list: restrictions.allow_list.clone(),
            },
            ims_account: self.connection().map(|c| ImsAccountFacts {
                ims_url: c.account.url.clone(),
                org_id: c.account.org_id.clone(),
                client_id: c.client_id.clone(),
                association_mask: c.account.mask.as_str().to_owned(),
                product_context: c.account.product_context.clone(),
            }),
            groups,
            operator_count: store.operator_count().await?,
            now: now.millis(),
        })
    }

    /// Operators with ids above `after`, in id order, each with its recorded usage.
    pub async fn migration_operators(
        &self,
        actor: &Operator,
        after: i64,
        limit: u32,
    ) -> Result<OperatorPage, Fault> {
        self.require_administration(actor).await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let store = self.store();
        let page = store.operators_after(after, limit).await?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(OperatorPage {
                operators: Vec::new(),
                next_after: None,
            });
        };
        let mut usage: HashMap<i64, Vec<UsageFacts>> = HashMap::new();
        for row in store.usage_of_operators(first.id, last.id).await? {
            if let Some(id) = row.key.operator_id {
                usage.entry(id).or_default().push(usage_facts(row));
            }
        }
        let next_after = (page.len() == limit as usize).then_some(last.id);
        Ok(OperatorPage {
            operators: page
                .into_iter()
                .map(|op| OperatorFacts {
                    usage: usage.remove(&op.id).unwrap_or_default(),
                    id: op.id,
                    login: op.login,
                    label: op.label,
                    email: op.email,
                    auth_type: op.auth_type.as_str().to_owned(),
                    disabled: op.disabled,
                    builtin: op.builtin,
                    groups: op.groups,
                    rights: op.rights,
                    ims_id: op.ims_id,
                })
                .collect(),
            next_after,
        })
    }
}

fn usage_facts(row: UsageSummary) -> UsageFacts {
    UsageFacts {
        action: row.key.action,
        auth_path: row.key.auth_path.as_str().to_owned(),
        source: row.key.source,
        client: row.key.client,
        outcome: row.key.outcome,
        count: row.counts.calls,
        first_at: row.counts.first_at.millis(),
        last_at: row.counts.last_at.millis(),
    }
}
