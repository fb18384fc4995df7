//! The accounts part of the GraphQL API.

use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};

use super::model;

/// What an account may do.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Owns clients, messages and mailings.
    User,
    /// Also sees every mailing and user, may pause mailings and block users.
    Manager,
    /// Also edits the blog and roles.
    Admin,
}

impl Role {
    pub fn from_db(role: &str) -> Role {
        match role {
            "admin" => Role::Admin,
            "manager" => Role::Manager,
            _ => Role::User,
        }
    }
}

/// An account.
pub struct User(pub model::User);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn full_name(&self) -> &str {
        &self.0.full_name
    }

    async fn role(&self) -> Role {
        Role::from_db(&self.0.role)
    }

    /// false: blocked by a manager or admin.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }

    async fn email_verified(&self) -> bool {
        self.0.email_verified_at.is_some()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The signed-in account; null when the request carries no valid session.
    async fn me(&self, _ctx: &Context<'_>) -> Option<User> {
        None
    }
}
