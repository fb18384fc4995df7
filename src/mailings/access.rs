//! Who may read and who may steer a mailing: its owner; managers and admins read every
//! mailing and may pause, resume or complete any of them, but edit only their own.

use super::model::Scope;
use crate::accounts::Viewer;
use crate::accounts::role::Role;
use crate::db::types::UserId;

/// The mailings a viewer may read.
pub fn read_scope(viewer: &Viewer) -> Scope {
    match viewer.role {
        Role::User => Scope::Owner(viewer.user_id),
        Role::Manager | Role::Admin => Scope::Everyone,
    }
}

/// Role check shared by pause, resume and complete: the owner, managers and admins.
pub fn may_steer(viewer: &Viewer, owner: UserId) -> bool {
    viewer.user_id == owner || matches!(viewer.role, Role::Manager | Role::Admin)
}
