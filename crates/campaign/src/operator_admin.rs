//! Operator management, as an operator holding the ADMINISTRATION right may do it. An
//! [`OperatorAdmin`] is obtained only through [`Operators::operator_admin`], which checks the right
//! from the store (not from a session's copy of it), so whoever holds one has been proven an
//! administrator of this instance. The SOAP API and the console both change operators through it.

use std::sync::Arc;

use ims_core::Now;

use crate::fault::Fault;
use crate::model::{Operator, OperatorGroup};
use crate::operators::{OperatorEdit, OperatorKey, WriteMode, Written};
use crate::service::{effective_rights, holds, Caller, Shared, ADMINISTRATION};
use crate::store::OperatorStore;

/// Operator administration: who may manage operators, and the changes they make, under the
/// restrictions in effect.
#[derive(Clone)]
pub struct Operators {
    pub(crate) shared: Arc<Shared>,
    pub(crate) operators: Arc<dyn OperatorStore>,
}

/// The operator pages and writes of one administrator.
#[derive(Clone, Copy)]
pub struct OperatorAdmin<'a> {
    service: &'a Operators,
    actor: &'a Operator,
}

impl Operators {
    pub(crate) fn new(shared: Arc<Shared>, operators: Arc<dyn OperatorStore>) -> Self {
        Operators { shared, operators }
    }

    /// Rights of an operator: direct ones and those of its groups.
    pub async fn effective_rights(&self, op: &Operator) -> Result<Vec<String>, Fault> {
        effective_rights(self.operators.as_ref(), op).await
    }

    /// Operator management for `actor`, who needs the ADMINISTRATION right.
    pub async fn operator_admin<'a>(&'a self, actor: &'a Operator) -> Result<OperatorAdmin<'a>, Fault> {
        if holds(&self.effective_rights(actor).await?, ADMINISTRATION) {
            Ok(OperatorAdmin { service: self, actor })
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
        Ok(self.service.operators.groups().await?)
    }

    pub async fn operator(&self, id: i64) -> Result<Option<Operator>, Fault> {
        Ok(self.service.operators.operator(id).await?)
    }

    /// One page of operators whose login, label or email contains `search`, and how many match.
    pub async fn operators_page(
        &self,
        search: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<Operator>, i64), Fault> {
        Ok(self
            .service
            .operators
            .operators_page(search, offset, limit)
            .await?)
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
        let store = self.service.operators.as_ref();
        let restrictions = self.service.shared.restrictions();
        match mode {
            Some(mode) => crate::operators::save(store, &restrictions, key, mode, edit, &ctx).await,
            None => crate::operators::delete(store, &restrictions, key, Some(self.actor.id), &ctx).await,
        }
    }
}
