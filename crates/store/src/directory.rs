//! The directory on both backends: product instances, product profiles and user groups (one
//! table, one namespace of names per organisation), direct memberships, user groups linked to
//! profiles, and administrator roles. Changes planned by the User Management API are applied a
//! request (or, after a conflict, an entry) per transaction, their inserts a table at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use ims_core::audit::AuditEvent;
use ims_core::error::StoreError;
use ims_core::Now;
use ims_identity::directory::{
    AdminRole, Group, GroupKind, HeldProfile, Membership, ProductInstance, RoleGrant,
};
use ims_identity::links::AccountLink;
use ims_identity::mail::Mail;
use ims_identity::model::User;
use ims_identity::store::{DirectoryStore, StoreResult, UsersPage, UsersQuery};
use ims_identity::umapi::{Change, GroupState, Snapshot};
use ims_sql::{value_rows, ROWS_PER_STATEMENT};

use crate::people::write_user;
use crate::{
    audit_in, audit_many, backend_error, begin_write, get, insert_users, placeholders, user_from, words,
    Backend, SqlStore, USER_COLUMNS,
};

const GROUP_COLUMNS: &str = "g.group_id, g.org_id, g.name, g.kind, g.description, g.instance_id, \
     g.license_quota, g.permissions, g.created_at, g.updated_at";

fn group_from(row: &AnyRow) -> StoreResult<Group> {
    Ok(Group {
        id: get(row, "group_id")?,
        org_id: get(row, "org_id")?,
        name: get(row, "name")?,
        kind: kind_of(row)?,
        description: get(row, "description")?,
        product_instance_id: get(row, "instance_id")?,
        license_quota: get(row, "license_quota")?,
        permissions: words(&get::<String>(row, "permissions")?),
        created_at: Now::from_millis(get(row, "created_at")?),
        updated_at: Now::from_millis(get(row, "updated_at")?),
    })
}

fn kind_of(row: &AnyRow) -> StoreResult<GroupKind> {
    let kind: String = get(row, "kind")?;
    GroupKind::parse(&kind).ok_or_else(|| StoreError::Backend(format!("unknown group kind {kind:?}")))
}

fn instance_from(row: &AnyRow) -> StoreResult<ProductInstance> {
    Ok(ProductInstance {
        id: get(row, "instance_id")?,
        org_id: get(row, "org_id")?,
        product_context: get(row, "product_context")?,
        name: get(row, "name")?,
        label: get(row, "label")?,
        url: get(row, "url")?,
        created_at: Now::from_millis(get(row, "created_at")?),
    })
}

/// The id of the group named `name` (case-insensitively) in `tx`; a conflict when it has gone
/// since the entry was planned.
async fn group_id(tx: &mut AnyConnection, org_id: &str, name: &str) -> StoreResult<i64> {
    let row = sqlx::query("SELECT group_id FROM directory_groups WHERE org_id = $1 AND name_lower = $2")
        .bind(org_id)
        .bind(name.to_lowercase())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_error)?;
    match row {
        Some(r) => get(&r, "group_id"),
        None => Err(StoreError::Conflict(format!("group {name:?} no longer exists"))),
    }
}

/// What a run of changes learnt and owes: group ids read once, and the members each group
/// gained, counted (against its licence quota) once at the end instead of at every member.
#[derive(Default)]
struct Applied {
    ids: HashMap<String, i64>,
    added: BTreeMap<i64, (String, i64)>,
}

impl Applied {
    async fn group_id(&mut self, tx: &mut AnyConnection, org_id: &str, name: &str) -> StoreResult<i64> {
        if let Some(id) = self.ids.get(&name.to_lowercase()) {
            return Ok(*id);
        }
        let id = group_id(tx, org_id, name).await?;
        self.ids.insert(name.to_lowercase(), id);
        Ok(id)
    }

    /// Reads the ids of the groups `changes` add members to, in one statement. A name not found
    /// is left to [`Applied::group_id`], which reports it.
    async fn learn_ids(
        &mut self,
        tx: &mut AnyConnection,
        org_id: &str,
        changes: &[Change],
    ) -> StoreResult<()> {
        let names: BTreeSet<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::AddMember { group, .. } => Some(group.to_lowercase()),
                _ => None,
            })
            .filter(|n| !self.ids.contains_key(n))
            .collect();
        let names: Vec<String> = names.into_iter().collect();
        for chunk in names.chunks(ROWS_PER_STATEMENT * 4) {
            let sql = format!(
                "SELECT group_id, name_lower FROM directory_groups WHERE org_id = $1 AND name_lower IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(org_id);
            for name in chunk {
                q = q.bind(name);
            }
            for row in q.fetch_all(&mut *tx).await.map_err(backend_error)? {
                self.ids.insert(get(&row, "name_lower")?, get(&row, "group_id")?);
            }
        }
        Ok(())
    }

    /// Names may change meaning (a group renamed or deleted): read them again; a deleted
    /// group's count is owed no more.
    fn forget(&mut self, deleted: Option<i64>) {
        self.ids.clear();
        if let Some(id) = deleted {
            self.added.remove(&id);
        }
    }

    /// Adds the new members to their groups' counts, in one statement for all the groups; the
    /// quota holds even against a concurrent request planned on the same count.
    async fn count_members(&mut self, tx: &mut AnyConnection) -> StoreResult<()> {
        let added = std::mem::take(&mut self.added);
        let groups: Vec<(&i64, &(String, i64))> = added.iter().collect();
        for chunk in groups.chunks(ROWS_PER_STATEMENT) {
            // $2k+1 a group, $2k+2 its new members.
            let gained = format!(
                "CASE group_id {} END",
                (0..chunk.len())
                    .map(|k| format!("WHEN ${} THEN ${}", 2 * k + 1, 2 * k + 2))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let ids = (0..chunk.len())
                .map(|k| format!("${}", 2 * k + 1))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE directory_groups SET member_count = member_count + {gained}
                 WHERE group_id IN ({ids}) AND (license_quota IS NULL OR member_count + {gained} <= license_quota)
                 RETURNING group_id"
            );
            let mut q = sqlx::query(&sql);
            for (id, (_, n)) in chunk {
                q = q.bind(**id).bind(*n);
            }
            let counted: BTreeSet<i64> = q
                .fetch_all(&mut *tx)
                .await
                .map_err(backend_error)?
                .iter()
                .map(|r| get(r, "group_id"))
                .collect::<StoreResult<_>>()?;
            if let Some((_, (name, _))) = chunk.iter().find(|(id, _)| !counted.contains(id)) {
                return Err(StoreError::Conflict(format!("{name:?} has no licence left")));
            }
        }
        Ok(())
    }
}

/// The inserts of a run of changes, held back and written a table at a time: one statement for
/// up to [`ROWS_PER_STATEMENT`] rows instead of one per row (each statement is a round trip, on
/// SQLite a hand-off to the connection's thread and back; a request creating ten people with
/// their memberships, invitations and notices made sixty). Written before any other change and
/// at the end of the run, tables in the order their foreign keys need: every change still sees
/// what the changes before it wrote.
#[derive(Default)]
struct Held<'a> {
    users: Vec<&'a User>,
    /// Group id, the group's name (for a quota refusal) and the user.
    members: Vec<(i64, &'a str, &'a str)>,
    links: Vec<&'a AccountLink>,
    mails: Vec<&'a Mail>,
    /// The person, the product instance, and the message to send when it is news to them.
    notices: Vec<(&'a str, i64, Option<&'a Mail>)>,
}

impl<'a> Held<'a> {
    /// Whether `change` is an insert held back here rather than made at once.
    fn holds(change: &Change) -> bool {
        matches!(
            change,
            Change::CreateUser(_)
                | Change::AddMember { .. }
                | Change::Invite { .. }
                | Change::AccessNotice { .. }
        )
    }

    /// Writes what is held, and holds nothing more.
    async fn write(&mut self, tx: &mut AnyConnection, applied: &mut Applied) -> StoreResult<()> {
        let Held {
            users,
            members,
            links,
            mut mails,
            notices,
        } = std::mem::take(self);
        insert_users(tx, &users).await?;
        let now = Now::system().millis();
        for chunk in members.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO group_members (group_id, user_id, added_at) VALUES {}
                 ON CONFLICT (group_id, user_id) DO NOTHING RETURNING group_id",
                value_rows(Backend::of(tx), chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for (id, _, user_id) in chunk {
                q = q.bind(*id).bind(*user_id).bind(now);
            }
            // Only the memberships that are new count against the groups' quotas.
            for row in q.fetch_all(&mut *tx).await.map_err(backend_error)? {
                let id: i64 = get(&row, "group_id")?;
                let name = chunk.iter().find(|m| m.0 == id).map_or("", |m| m.1);
                applied.added.entry(id).or_insert_with(|| (name.to_owned(), 0)).1 += 1;
            }
        }
        crate::people::insert_links(tx, &links).await?;
        // A person hears of a product instance once: the notice's row decides, and the message
        // goes with the rows that are new.
        for chunk in notices.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO access_notices (user_id, product_instance_id, created_at) VALUES {}
                 ON CONFLICT (user_id, product_instance_id) DO NOTHING
                 RETURNING user_id, product_instance_id",
                value_rows(Backend::of(tx), chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for (user_id, instance, mail) in chunk {
                q = q
                    .bind(*user_id)
                    .bind(*instance)
                    .bind(mail.map_or(now, |m| m.created_at.millis()));
            }
            for row in q.fetch_all(&mut *tx).await.map_err(backend_error)? {
                let (user_id, instance): (String, i64) =
                    (get(&row, "user_id")?, get(&row, "product_instance_id")?);
                let mail = chunk
                    .iter()
                    .find(|n| n.0 == user_id && n.1 == instance)
                    .and_then(|n| n.2);
                mails.extend(mail);
            }
        }
        crate::outbox::insert_mails(tx, &mails).await
    }
}

/// Makes `change`, or holds it back in `held` when it is an insert; what is held is written
/// before any other change.
async fn apply<'a>(
    tx: &mut AnyConnection,
    org_id: &str,
    change: &'a Change,
    applied: &mut Applied,
    held: &mut Held<'a>,
) -> StoreResult<()> {
    if !Held::holds(change) {
        held.write(tx, applied).await?;
    }
    match change {
        Change::CreateUser(u) => held.users.push(u),
        Change::AddMember { group, user_id } => {
            let id = applied.group_id(tx, org_id, group).await?;
            held.members.push((id, group, user_id));
        }
        Change::Invite { link, mail } => {
            held.links.push(link);
            held.mails.push(mail);
        }
        Change::AccessNotice {
            user_id,
            product_instance_id,
            mail,
        } => held.notices.push((user_id, *product_instance_id, mail.as_ref())),
        Change::UpdateUser { user, end_sessions } => write_user(tx, user, *end_sessions).await?,
        Change::RemoveMember { group, user_id } => {
            let id = group_id(tx, org_id, group).await?;
            let removed = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id.clone())
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
            if removed.rows_affected() == 1 {
                sqlx::query(
                    "UPDATE directory_groups SET member_count = member_count - 1 WHERE group_id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
            }
        }
        Change::CreateGroup(g) => {
            insert_group(tx, g).await?;
        }
        Change::UpdateGroup { name, group } => {
            let id = group_id(tx, org_id, name).await?;
            applied.forget(None);
            sqlx::query(
                "UPDATE directory_groups SET name = $1, name_lower = $2, description = $3, license_quota = $4,
                 permissions = $5, updated_at = $6 WHERE group_id = $7",
            )
            .bind(group.name.clone())
            .bind(group.name.to_lowercase())
            .bind(group.description.clone())
            .bind(group.license_quota)
            .bind(group.permissions.join(" "))
            .bind(group.updated_at.millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unique_conflict)?;
        }
        Change::DeleteGroup { name } => {
            let id = group_id(tx, org_id, name).await?;
            applied.forget(Some(id));
            // Explicit deletes: SQLite enforces no cascades unless told to.
            for sql in [
                "DELETE FROM group_members WHERE group_id = $1",
                "DELETE FROM group_links WHERE user_group_id = $1 OR profile_id = $1",
                "DELETE FROM profile_credentials WHERE group_id = $1",
                "DELETE FROM admin_roles WHERE target = CAST($1 AS TEXT) AND role IN ('profile_admin', 'user_group_admin')",
                "DELETE FROM directory_groups WHERE group_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
        }
        Change::Link { user_group, profile } | Change::Unlink { user_group, profile } => {
            let ug = group_id(tx, org_id, user_group).await?;
            let p = group_id(tx, org_id, profile).await?;
            let sql = if matches!(change, Change::Link { .. }) {
                "INSERT INTO group_links (user_group_id, profile_id) VALUES ($1, $2)
                 ON CONFLICT (user_group_id, profile_id) DO NOTHING"
            } else {
                "DELETE FROM group_links WHERE user_group_id = $1 AND profile_id = $2"
            };
            sqlx::query(sql)
                .bind(ug)
                .bind(p)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
    }
    Ok(())
}

/// A taken name is a conflict the caller reports; anything else is the backend's.
fn unique_conflict(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.message().to_lowercase().contains("unique") => {
            StoreError::Conflict(d.message().to_owned())
        }
        _ => backend_error(e),
    }
}

async fn insert_group(tx: &mut AnyConnection, g: &Group) -> StoreResult<i64> {
    let row = sqlx::query(
        "INSERT INTO directory_groups (org_id, name, name_lower, kind, description, instance_id, license_quota,
         permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING group_id",
    )
    .bind(g.org_id.clone())
    .bind(g.name.clone())
    .bind(g.name.to_lowercase())
    .bind(g.kind.as_str())
    .bind(g.description.clone())
    .bind(g.product_instance_id)
    .bind(g.license_quota)
    .bind(g.permissions.join(" "))
    .bind(g.created_at.millis())
    .bind(g.updated_at.millis())
    .fetch_one(&mut *tx)
    .await
    .map_err(unique_conflict)?;
    get(&row, "group_id")
}

/// `(user id, group name)` pairs for the users of `ids`: direct memberships, and with
/// `inherited` the profiles their user groups are linked to (a pair may come twice).
async fn group_names_of(
    conn: &mut AnyConnection,
    ids: &[String],
    inherited: bool,
) -> StoreResult<Vec<(String, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = placeholders(1, ids.len());
    let mut sql = format!(
        "SELECT m.user_id, g.name FROM group_members m JOIN directory_groups g ON g.group_id = m.group_id
         WHERE m.user_id IN ({list})"
    );
    if inherited {
        sql.push_str(&format!(
            " UNION ALL SELECT m.user_id, p.name FROM group_members m
             JOIN group_links l ON l.user_group_id = m.group_id
             JOIN directory_groups p ON p.group_id = l.profile_id WHERE m.user_id IN ({list})"
        ));
    }
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(id.clone());
    }
    let rows = q.fetch_all(&mut *conn).await.map_err(backend_error)?;
    rows.iter()
        .map(|r| Ok((get(r, "user_id")?, get(r, "name")?)))
        .collect()
}

#[async_trait]
impl DirectoryStore for SqlStore {
    async fn ensure_product_instance(
        &self,
        org_id: &str,
        product_context: &str,
        name: &str,
        label: &str,
        url: &str,
        now: Now,
    ) -> StoreResult<ProductInstance> {
        sqlx::query(
            "INSERT INTO product_instances (org_id, product_context, name, label, url, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (org_id, product_context, name) DO UPDATE SET label = excluded.label, url = excluded.url",
        )
        .bind(org_id)
        .bind(product_context)
        .bind(name)
        .bind(label)
        .bind(url)
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(backend_error)?;
        let row = sqlx::query(
            "SELECT instance_id, org_id, product_context, name, label, url, created_at FROM product_instances
             WHERE org_id = $1 AND product_context = $2 AND name = $3",
        )
        .bind(org_id)
        .bind(product_context)
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(backend_error)?;
        instance_from(&row)
    }

    async fn product_instances(&self, org_id: &str) -> StoreResult<Vec<ProductInstance>> {
        let rows = sqlx::query(
            "SELECT instance_id, org_id, product_context, name, label, url, created_at FROM product_instances
             WHERE org_id = $1 ORDER BY product_context, name",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(instance_from).collect()
    }

    async fn group(&self, org_id: &str, name: &str) -> StoreResult<Option<Group>> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM directory_groups g WHERE g.org_id = $1 AND g.name_lower = $2"
        ))
        .bind(org_id)
        .bind(name.to_lowercase())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        row.as_ref().map(group_from).transpose()
    }

    async fn groups(&self, org_id: &str) -> StoreResult<Vec<(Group, i64)>> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS}, g.member_count AS members
             FROM directory_groups g WHERE g.org_id = $1 ORDER BY g.name_lower"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter()
            .map(|r| Ok((group_from(r)?, get(r, "members")?)))
            .collect()
    }

    async fn directory_snapshot(
        &self,
        org_id: &str,
        emails: &BTreeSet<String>,
        names: &BTreeSet<String>,
    ) -> StoreResult<Snapshot> {
        // One transaction: the users, their groups and the counts are read as of one moment.
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let mut users = BTreeMap::new();
        if !emails.is_empty() {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND email_lower IN ({})",
                placeholders(2, emails.len())
            );
            // Planned with its values each time, not once per connection: a plan cached while
            // the table was small (as when a migration starts) reads every user of the
            // organisation to find ten, and the requests slow down as the directory grows.
            let mut q = sqlx::query(&sql).persistent(false).bind(org_id);
            for email in emails {
                q = q.bind(email.clone());
            }
            for r in q.fetch_all(&mut *tx).await.map_err(backend_error)? {
                let user = user_from(&r)?;
                users.insert(user.email.to_lowercase(), user);
            }
        }
        let ids: Vec<String> = users.values().map(|u| u.user_id.clone()).collect();
        let names: Vec<&String> = names.iter().collect();
        // The groups named, and those the named users are in.
        let by_name = if names.is_empty() {
            "1 = 0".to_owned()
        } else {
            format!("g.name_lower IN ({})", placeholders(2, names.len()))
        };
        let by_member = if ids.is_empty() {
            "1 = 0".to_owned()
        } else {
            format!(
                "g.group_id IN (SELECT group_id FROM group_members WHERE user_id IN ({}))",
                placeholders(2 + names.len(), ids.len())
            )
        };
        let sql = format!(
            "SELECT {GROUP_COLUMNS}, g.member_count AS members
             FROM directory_groups g WHERE g.org_id = $1 AND ({by_name} OR {by_member})"
        );
        let mut q = sqlx::query(&sql).bind(org_id);
        for n in &names {
            q = q.bind((*n).clone());
        }
        for id in &ids {
            q = q.bind(id.clone());
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(backend_error)?;
        let mut groups = BTreeMap::new();
        let mut by_id = BTreeMap::new();
        for r in &rows {
            let g = group_from(r)?;
            by_id.insert(g.id, g.name.to_lowercase());
            groups.insert(
                g.name.to_lowercase(),
                GroupState {
                    member_count: get(r, "members")?,
                    group: g,
                    members: BTreeSet::new(),
                    profiles: BTreeSet::new(),
                },
            );
        }
        if !ids.is_empty() {
            let sql = format!(
                "SELECT group_id, user_id FROM group_members WHERE user_id IN ({})",
                placeholders(1, ids.len())
            );
            let mut q = sqlx::query(&sql);
            for id in &ids {
                q = q.bind(id.clone());
            }
            for r in &q.fetch_all(&mut *tx).await.map_err(backend_error)? {
                let id: i64 = get(r, "group_id")?;
                if let Some(state) = by_id.get(&id).and_then(|n| groups.get_mut(n)) {
                    state.members.insert(get(r, "user_id")?);
                }
            }
        }
        let group_ids: Vec<i64> = by_id.keys().copied().collect();
        if !group_ids.is_empty() {
            let sql = format!(
                "SELECT l.user_group_id, p.name_lower FROM group_links l JOIN directory_groups p ON p.group_id = l.profile_id
                 WHERE l.user_group_id IN ({})",
                placeholders(1, group_ids.len())
            );
            let mut q = sqlx::query(&sql);
            for id in &group_ids {
                q = q.bind(*id);
            }
            for r in &q.fetch_all(&mut *tx).await.map_err(backend_error)? {
                let ug: i64 = get(r, "user_group_id")?;
                if let Some(state) = by_id.get(&ug).and_then(|n| groups.get_mut(n)) {
                    state.profiles.insert(get(r, "name_lower")?);
                }
            }
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(Snapshot {
            org_id: org_id.to_owned(),
            users,
            groups,
            reactivated: BTreeSet::new(),
        })
    }

    async fn linked(&self, org_id: &str, group: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT p.name FROM group_links l
             JOIN directory_groups ug ON ug.group_id = l.user_group_id
             JOIN directory_groups p ON p.group_id = l.profile_id
             WHERE ug.org_id = $1 AND ug.name_lower = $2
             UNION
             SELECT ug.name FROM group_links l
             JOIN directory_groups ug ON ug.group_id = l.user_group_id
             JOIN directory_groups p ON p.group_id = l.profile_id
             WHERE p.org_id = $1 AND p.name_lower = $2
             ORDER BY 1",
        )
        .bind(org_id)
        .bind(group.to_lowercase())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(|r| get(r, "name")).collect()
    }

    async fn apply_changes(&self, org_id: &str, changes: &[Change], audit: &[AuditEvent]) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let mut applied = Applied::default();
        applied.learn_ids(&mut tx, org_id, changes).await?;
        let mut held = Held::default();
        for change in changes {
            apply(&mut tx, org_id, change, &mut applied, &mut held).await?;
        }
        held.write(&mut tx, &mut applied).await?;
        applied.count_members(&mut tx).await?;
        audit_many(&mut tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn users_page(&self, org_id: &str, query: &UsersQuery<'_>) -> StoreResult<Option<UsersPage>> {
        let UsersQuery {
            group,
            direct_only,
            after,
            offset,
            limit,
        } = *query;
        let mut filter = String::from("u.org_id = $1 AND u.status <> 'removed'");
        let mut group_key = None;
        if let Some(name) = group {
            let row =
                sqlx::query("SELECT group_id FROM directory_groups WHERE org_id = $1 AND name_lower = $2")
                    .bind(org_id)
                    .bind(name.to_lowercase())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend_error)?;
            let Some(row) = row else {
                return Ok(None);
            };
            group_key = Some(get::<i64>(&row, "group_id")?);
            filter.push_str(" AND (u.user_id IN (SELECT user_id FROM group_members WHERE group_id = $2)");
            if !direct_only {
                filter.push_str(
                    " OR u.user_id IN (SELECT m.user_id FROM group_members m JOIN group_links l
                     ON l.user_group_id = m.group_id WHERE l.profile_id = $2)",
                );
            }
            filter.push(')');
        }
        // Placeholders in ascending order of appearance: SQLite numbers them that way.
        let mut next = if group_key.is_some() { 3 } else { 2 };
        if after.is_some() {
            filter.push_str(&format!(" AND u.email_lower > ${next}"));
            next += 1;
        }
        let columns = USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM users u WHERE {filter} ORDER BY u.email_lower LIMIT ${next} OFFSET ${}",
            next + 1
        );
        let mut q = sqlx::query(&sql).bind(org_id);
        if let Some(g) = group_key {
            q = q.bind(g);
        }
        if let Some(a) = after {
            q = q.bind(a.to_owned());
        }
        let q = q
            .bind(i64::from(limit) + 1)
            .bind(i64::from(if after.is_some() { 0 } else { offset }));
        // The page and its users' groups as of one moment.
        let mut tx = self.pool.begin().await.map_err(backend_error)?;
        if self.backend == Backend::Postgres {
            // A page reads its page: the indexes hold the users in this order, and their
            // memberships by user. Without statistics (autovacuum off, or a directory that
            // just grew by a bulk load) PostgreSQL's guesses read and sort every user after the
            // key and every membership instead, once per page: a full listing would grow with
            // the square of its size. JIT is off as well: the penalty these settings put on the
            // plans they discourage lifts estimates past the JIT threshold, and compiling a
            // query took longer than running it.
            for sql in [
                "SET LOCAL enable_sort = off",
                "SET LOCAL enable_seqscan = off",
                "SET LOCAL jit = off",
            ] {
                sqlx::query(sql).execute(&mut *tx).await.map_err(backend_error)?;
            }
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(backend_error)?;
        let more = rows.len() > limit as usize;
        let users = rows
            .iter()
            .take(limit as usize)
            .map(user_from)
            .collect::<StoreResult<Vec<_>>>()?;
        let ids: Vec<String> = users.iter().map(|u| u.user_id.clone()).collect();
        let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (user, group) in group_names_of(&mut tx, &ids, !direct_only).await? {
            names.entry(user).or_default().insert(group);
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(Some((
            users
                .into_iter()
                .map(|u| {
                    let groups = names.remove(&u.user_id).unwrap_or_default().into_iter().collect();
                    (u, groups)
                })
                .collect(),
            more,
        )))
    }

    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT g.name, g.kind, NULL AS through FROM group_members m JOIN directory_groups g ON g.group_id = m.group_id
             WHERE m.user_id = $1
             UNION ALL
             SELECT p.name, p.kind, ug.name AS through FROM group_members m
             JOIN directory_groups ug ON ug.group_id = m.group_id
             JOIN group_links l ON l.user_group_id = ug.group_id
             JOIN directory_groups p ON p.group_id = l.profile_id
             WHERE m.user_id = $1
             ORDER BY 1, 3",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter()
            .map(|r| {
                Ok(Membership {
                    group: get(r, "name")?,
                    kind: kind_of(r)?,
                    through: get(r, "through")?,
                })
            })
            .collect()
    }

    async fn held_profiles(
        &self,
        user_id: &str,
        product_context: Option<&str>,
    ) -> StoreResult<Vec<HeldProfile>> {
        let rows = sqlx::query(
            "SELECT p.name, p.permissions, i.product_context, i.name AS instance, NULL AS through
             FROM group_members m JOIN directory_groups p ON p.group_id = m.group_id
             JOIN product_instances i ON i.instance_id = p.instance_id
             WHERE m.user_id = $1 AND p.kind = 'PRODUCT_PROFILE'
             UNION ALL
             SELECT p.name, p.permissions, i.product_context, i.name AS instance, ug.name AS through
             FROM group_members m JOIN directory_groups ug ON ug.group_id = m.group_id
             JOIN group_links l ON l.user_group_id = ug.group_id
             JOIN directory_groups p ON p.group_id = l.profile_id
             JOIN product_instances i ON i.instance_id = p.instance_id
             WHERE m.user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let mut held: BTreeMap<String, HeldProfile> = BTreeMap::new();
        for r in &rows {
            let context: String = get(r, "product_context")?;
            if product_context.is_some_and(|c| c != context) {
                continue;
            }
            let name: String = get(r, "name")?;
            let entry = held.entry(name.clone()).or_insert_with(|| HeldProfile {
                product_context: context.clone(),
                instance: String::new(),
                profile: name,
                permissions: Vec::new(),
                through: Vec::new(),
            });
            entry.instance = get(r, "instance")?;
            entry.permissions = words(&get::<String>(r, "permissions")?);
            if let Some(t) = get::<Option<String>>(r, "through")? {
                entry.through.push(t);
            }
        }
        Ok(held.into_values().collect())
    }

    async fn set_profile_credential(
        &self,
        org_id: &str,
        profile: &str,
        client_id: &str,
        held: bool,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let id = group_id(&mut tx, org_id, profile).await?;
        crate::developer::set_profile(&mut tx, client_id, id, held, now).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn credential_profiles(
        &self,
        client_id: &str,
        product_context: Option<&str>,
    ) -> StoreResult<Vec<HeldProfile>> {
        let rows = sqlx::query(
            "SELECT p.name, p.permissions, i.product_context, i.name AS instance FROM profile_credentials c
             JOIN directory_groups p ON p.group_id = c.group_id
             JOIN product_instances i ON i.instance_id = p.instance_id
             WHERE c.client_id = $1 ORDER BY p.name_lower",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let mut out = Vec::new();
        for r in &rows {
            let context: String = get(r, "product_context")?;
            if product_context.is_some_and(|c| c != context) {
                continue;
            }
            out.push(HeldProfile {
                product_context: context,
                instance: get(r, "instance")?,
                profile: get(r, "name")?,
                permissions: words(&get::<String>(r, "permissions")?),
                through: Vec::new(),
            });
        }
        Ok(out)
    }

    async fn profile_credentials(&self, org_id: &str, profile: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT c.client_id FROM profile_credentials c JOIN directory_groups p ON p.group_id = c.group_id
             WHERE p.org_id = $1 AND p.name_lower = $2 ORDER BY c.client_id",
        )
        .bind(org_id)
        .bind(profile.to_lowercase())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(|r| get(r, "client_id")).collect()
    }

    async fn role_grants(&self, user_id: &str) -> StoreResult<Vec<RoleGrant>> {
        let rows = sqlx::query(
            "SELECT user_id, role, target FROM admin_roles WHERE user_id = $1 ORDER BY role, target",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter()
            .map(|r| {
                let role: String = get(r, "role")?;
                Ok(RoleGrant {
                    user_id: get(r, "user_id")?,
                    role: AdminRole::parse(&role)
                        .ok_or_else(|| StoreError::Backend(format!("unknown role {role:?}")))?,
                    target: get(r, "target")?,
                })
            })
            .collect()
    }

    async fn set_role(&self, grant: &RoleGrant, held: bool, now: Now, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let q = if held {
            sqlx::query(
                "INSERT INTO admin_roles (user_id, role, target, granted_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, role, target) DO NOTHING",
            )
            .bind(grant.user_id.clone())
            .bind(grant.role.as_str())
            .bind(grant.target.clone())
            .bind(now.millis())
        } else {
            sqlx::query("DELETE FROM admin_roles WHERE user_id = $1 AND role = $2 AND target = $3")
                .bind(grant.user_id.clone())
                .bind(grant.role.as_str())
                .bind(grant.target.clone())
        };
        q.execute(&mut *tx).await.map_err(backend_error)?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }
}
