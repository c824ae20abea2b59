//! Operator management, as an operator holding the ADMINISTRATION right may do it. An
//! [`OperatorAdmin`] is obtained only through [`Instance::operator_admin`], which checks the right
//! from the store (not from a session's copy of it), so whoever holds one has been proven an
//! administrator of this instance. The SOAP API and the console both change operators through it.

use ims_core::Now;

use crate::fault::Fault;
use crate::model::{Operator, OperatorGroup};
use crate::operators::{OperatorEdit, OperatorKey, WriteMode, Written};
use crate::service::{holds, Caller, Instance, ADMINISTRATION};

/// The operator pages and writes of one administrator.
#[derive(Clone, Copy)]
pub struct OperatorAdmin<'a> {
    instance: &'a Instance,
    actor: &'a Operator,
}

impl Instance {
    /// Operator management for `actor`, who needs the ADMINISTRATION right.
    pub async fn operator_admin<'a>(&'a self, actor: &'a Operator) -> Result<OperatorAdmin<'a>, Fault> {
        if holds(&self.effective_rights(actor).await?, ADMINISTRATION) {
            Ok(OperatorAdmin {
                instance: self,
                actor,
            })
        } else {
            Err(Fault::forbidden(
                "managing operators needs the ADMINISTRATION right",
            ))
        }
    }

    /// Creates, changes (`mode`) or deletes (`None`) an operator on behalf of `actor`, who needs
    /// the ADMINISTRATION right. The one path the SOAP API and the console share.
    pub async fn change_operator(
        &self,
        actor: &Operator,
        key: &OperatorKey,
        mode: Option<WriteMode>,
        edit: OperatorEdit,
        now: Now,
        caller: &Caller,
    ) -> Result<Written, Fault> {
        self.operator_admin(actor)
            .await?
            .change(key, mode, edit, now, caller)
            .await
    }
}

impl OperatorAdmin<'_> {
    /// The instance's operator groups, with their rights.
    pub async fn groups(&self) -> Result<Vec<OperatorGroup>, Fault> {
        Ok(self.instance.store.groups().await?)
    }

    pub async fn operator(&self, id: i64) -> Result<Option<Operator>, Fault> {
        Ok(self.instance.store.operator(id).await?)
    }

    /// One page of operators whose login, label or email contains `search`, and how many match.
    pub async fn operators_page(
        &self,
        search: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<Operator>, i64), Fault> {
        Ok(self.instance.store.operators_page(search, offset, limit).await?)
    }

    /// Creates, changes (`mode`) or deletes (`None`) an operator.
    pub async fn change(
        &self,
        key: &OperatorKey,
        mode: Option<WriteMode>,
        edit: OperatorEdit,
        now: Now,
        caller: &Caller,
    ) -> Result<Written, Fault> {
        let ctx = ims_core::audit::Context {
            now,
            actor: format!("operator:{}", self.actor.login),
            source: caller.source.clone(),
            request_id: None,
        };
        let store = self.instance.store.as_ref();
        let restrictions = self.instance.restrictions();
        match mode {
            Some(mode) => crate::operators::save(store, &restrictions, key, mode, edit, &ctx).await,
            None => crate::operators::delete(store, &restrictions, key, Some(self.actor.id), &ctx).await,
        }
    }
}
